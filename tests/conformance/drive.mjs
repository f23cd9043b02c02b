// The conformant client of the kosoku fuzzingserver (Autobahn client cases),
// used to test tidegate's upstream side: Node `ws` — itself tested against
// the Autobahn suite by its authors — connects (through tidegate, or
// directly for the baseline), runs every case by echoing each message back,
// and asks the server to write its reports.
//
//   node tests/conformance/drive.mjs BASE_URL [--deflate]
import WebSocket from "../node/node_modules/ws/index.js";

const [base, ...flags] = process.argv.slice(2);
const deflate = flags.includes("--deflate");
const AGENT = "tidegate";
const CASE_TIMEOUT_MS = 120_000;

function open(path, onMessage) {
  return new Promise((resolve) => {
    const ws = new WebSocket(base.replace(/\/$/, "") + path, {
      perMessageDeflate: deflate,
      // No limits: the 9.* cases send up to 16 MiB, and up to 65,536 fragments.
      maxPayload: 0,
      maxFragments: 0,
      maxBufferedChunks: 0,
    });
    const timer = setTimeout(() => ws.terminate(), CASE_TIMEOUT_MS);
    ws.on("message", (data, isBinary) => onMessage?.(ws, data, isBinary));
    ws.on("error", () => {}); // the fuzzingserver judges the outcome, not us
    ws.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

let count = 0;
await open("/getCaseCount", (ws, data) => {
  count = Number(data.toString());
});
for (let n = 1; n <= count; n++) {
  await open(`/runCase?case=${n}&agent=${AGENT}`, (ws, data, isBinary) => ws.send(data, { binary: isBinary }));
}
await open(`/updateReports?agent=${AGENT}`);
console.log(`drive.mjs: ran ${count} cases`);
