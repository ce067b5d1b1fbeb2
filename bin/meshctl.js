#!/usr/bin/env node
import "../dist/src/cli/meshctl.js";
