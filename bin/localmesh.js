#!/usr/bin/env node
import { run } from "../dist/src/localmesh/main.js";
run();
