#!/usr/bin/env node
// Compiles contracts/src/*.sol with solc-js and writes contracts/out/<Contract>.json
// ({contractName, abi, bytecode, deployedBytecode}). Deterministic: the same sources give the
// same bytes.
//
//   node contracts/build.js            write the artifacts
//   node contracts/build.js --check    exit 1 when the committed artifacts differ from the sources
//
// solc-js is found through TRIBUTARY_SOLC_JS (set by scripts/setup.sh) or `require("solc")`.
"use strict";
const fs = require("fs");
const path = require("path");

const solc = require(process.env.TRIBUTARY_SOLC_JS || "solc");
const here = __dirname;
const srcDir = path.join(here, "src");
const outDir = path.join(here, "out");
const check = process.argv.includes("--check");

// src/: the deployed contracts; test/: contracts only the tests deploy (keyed `test/…`).
const testDir = path.join(here, "test");
const sources = {};
for (const [dir, prefix] of [[srcDir, ""], [testDir, "test/"]]) {
  if (!fs.existsSync(dir)) continue;
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".sol")).sort()) {
    sources[prefix + f] = { content: fs.readFileSync(path.join(dir, f), "utf8") };
  }
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(2);

let stale = [];
for (const [file, contracts] of Object.entries(output.contracts)) {
  for (const [name, c] of Object.entries(contracts)) {
    if (!c.evm.bytecode.object || c.abi.length === 0) continue; // abstract contracts, internal libraries
    const artifact = {
      contractName: name,
      sourceName: file.startsWith("test/") ? `contracts/${file}` : `contracts/src/${file}`,
      compiler: `solc-js ${solc.version()}`,
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    const text = JSON.stringify(artifact, null, 2) + "\n";
    const target = path.join(outDir, `${name}.json`);
    if (check) {
      const old = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
      if (old !== text) stale.push(target);
    } else {
      fs.mkdirSync(outDir, { recursive: true });
      fs.writeFileSync(target, text);
      console.log(`wrote ${path.relative(process.cwd(), target)}`);
    }
  }
}
if (stale.length) {
  console.error(`artifacts out of date with contracts/src: ${stale.join(", ")}\nfix: run \`make contracts\` and commit contracts/out`);
  process.exit(1);
}
