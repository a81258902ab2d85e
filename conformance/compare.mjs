// compare.mjs checks the MCP conformance suite's results against
// conformance/baseline.txt. It is run by scripts/conformance.sh with the
// pinned Node 22 and needs no packages.
//
//   node compare.mjs BASELINE LABEL=RESULTS_DIR=SCENARIO_LIST ...
//
// RESULTS_DIR is a suite run's --output-dir (one server-<scenario>-<time>/
// directory with checks.json per scenario); SCENARIO_LIST is the output of
// `conformance list --server` for the same selection, so a scenario that
// crashed without writing results is caught too.
//
// A scenario fails when one of its checks has status FAILURE (warnings and
// skipped checks do not fail it). The run fails when
//   - a scenario fails that the baseline does not list for that run,
//   - a baseline entry passes (the baseline is stale: remove the line), or
//   - a baseline entry names no scenario of any run (a typo).
// With --draft it prints every failure as a baseline line instead.
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";

const args = process.argv.slice(2);
const draft = args[0] === "--draft";
if (draft) args.shift();
if (args.length < 2) {
  console.error("usage: node compare.mjs [--draft] BASELINE LABEL=RESULTS_DIR=SCENARIO_LIST ...");
  process.exit(2);
}
const [baselinePath, ...runSpecs] = args;

// Baseline lines: RUNS ENTRY REASON, where RUNS is * or a comma list of run
// labels and ENTRY is a scenario or scenario:check-id.
function readBaseline(path) {
  const entries = [];
  readFileSync(path, "utf8").split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const m = line.match(/^(\S+)\s+(\S+)\s+(.+)$/);
    if (!m) {
      throw new Error(`${path}:${i + 1}: expected "RUNS SCENARIO[:CHECK] REASON", got ${JSON.stringify(line)}`);
    }
    const [scenario, check] = m[2].split(":");
    entries.push({ line: i + 1, runs: m[1] === "*" ? null : m[1].split(","), scenario, check, reason: m[3], used: false });
  });
  return entries;
}

// readRun returns scenario -> {checks: [{id,status,msg}]} for one results dir.
function readRun(dir) {
  const out = new Map();
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const m = name.match(/^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/);
    if (!m) continue;
    const file = join(dir, name, "checks.json");
    let checks = [];
    try {
      checks = JSON.parse(readFileSync(file, "utf8")).map((c) => ({
        id: c.id, status: c.status, msg: c.errorMessage || c.description || "",
      }));
    } catch (e) {
      checks = [{ id: "(results)", status: "FAILURE", msg: `cannot read ${file}: ${e.message}` }];
    }
    out.set(m[1], { checks });
  }
  return out;
}

function readList(path) {
  return readFileSync(path, "utf8").split("\n")
    .map((l) => l.match(/^\s+- (\S+)/)).filter(Boolean).map((m) => m[1]);
}

const baseline = draft ? [] : readBaseline(baselinePath);
const problems = [];
const known = new Set();
let draftLines = [];

for (const spec of runSpecs) {
  const [label, dir, listFile] = spec.split("=");
  const results = readRun(dir);
  const expected = readList(listFile);
  let passed = 0, failed = 0, excused = 0;
  for (const scenario of expected) {
    known.add(scenario);
    const r = results.get(scenario) || { checks: [{ id: "(results)", status: "FAILURE", msg: "no results: the scenario crashed or timed out" }] };
    const applies = baseline.filter((e) => e.scenario === scenario && (e.runs === null || e.runs.includes(label)));
    const whole = applies.find((e) => !e.check);
    const failing = r.checks.filter((c) => c.status === "FAILURE");
    const failingIds = new Set(failing.map((c) => c.id));
    for (const e of applies) e.used = true;
    if (failing.length === 0) passed++; else failed++;
    if (draft) {
      for (const id of failingIds) {
        const c = failing.find((x) => x.id === id);
        draftLines.push(`${label} ${scenario}:${id} ${c.msg.replace(/\s+/g, " ").slice(0, 160)}`);
      }
      continue;
    }
    // Stale entries: the thing they excuse now passes.
    if (whole && failing.length === 0) {
      problems.push(`STALE [${label}] ${scenario} now passes: remove line ${whole.line} of ${baselinePath}`);
    }
    for (const e of applies.filter((e) => e.check)) {
      const statuses = r.checks.filter((c) => c.id === e.check).map((c) => c.status);
      if (statuses.includes("SUCCESS") && !statuses.includes("FAILURE")) {
        problems.push(`STALE [${label}] ${scenario}:${e.check} now passes: remove line ${e.line} of ${baselinePath}`);
      }
    }
    if (failing.length === 0) continue;
    if (whole) { excused++; continue; }
    const excusedIds = new Set(applies.filter((e) => e.check).map((e) => e.check));
    const unexpected = failing.filter((c) => !excusedIds.has(c.id));
    if (unexpected.length === 0) { excused++; continue; }
    for (const c of unexpected) {
      problems.push(`FAIL [${label}] ${scenario}:${c.id}: ${c.msg.replace(/\s+/g, " ").slice(0, 300)}`);
    }
  }
  const extra = [...results.keys()].filter((s) => !expected.includes(s));
  if (extra.length) problems.push(`[${label}] results for scenarios not in the suite's list: ${extra.join(", ")}`);
  console.log(`conformance [${label}]: ${expected.length} scenarios: ${passed} pass, ${failed} fail (${excused} listed in the baseline)`);
}

if (draft) {
  console.log(draftLines.join("\n"));
  process.exit(0);
}
for (const e of baseline) {
  if (!known.has(e.scenario)) {
    problems.push(`${baselinePath}:${e.line}: no run has a scenario named ${e.scenario}`);
  } else if (!e.used) {
    problems.push(`${baselinePath}:${e.line}: ${e.scenario} is not run under ${e.runs.join(",")}: fix the run labels`);
  }
}
if (problems.length) {
  console.log(problems.join("\n"));
  console.log(`conformance: ${problems.length} problem(s); failures not in ${baselinePath} are regressions (or new scenarios to fix or list with a reason)`);
  process.exit(1);
}
console.log("conformance: every failure is in the baseline, and every baseline entry still fails");
