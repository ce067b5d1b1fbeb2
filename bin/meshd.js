#!/usr/bin/env node
import { run } from "../dist/src/cmd/meshd.js";
run();
