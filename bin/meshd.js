#!/usr/bin/env node
import "../dist/src/cmd/meshd.js";
