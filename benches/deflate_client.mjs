// Load for benches/deflate_passthrough.py and deflate_edge.py: C
// connections, each sending M 1 KiB JSON messages one at a time (waiting
// for each echo), with or without offering permessage-deflate. Prints one
// JSON line: messages, seconds, the extension the server chose. With
// `hold`, the connections stay open (idle) after their messages until
// stdin closes; "ready" is printed once all have finished.
//
// With PACE_MS=N in the environment, each connection waits N ms after each
// echo (a paced rate, the same with and without compression).
//
//   node benches/deflate_client.mjs URL CONNECTIONS MESSAGES on|off [hold]
import WebSocket from "../tests/node/node_modules/ws/index.js";

const [url, c, m, deflate, hold] = process.argv.slice(2);
const conns = Number(c);
const perConn = Number(m);
const paceMs = Number(process.env.PACE_MS || 0);

// A 1 KiB JSON message of the kind a chat or ticker sends: fixed keys,
// text of words drawn pseudo-randomly (so messages differ from each other).
const WORDS = ("the of and to in is you that it he was for on are as with his they at be this " +
  "have from or one had by word but not what all were we when your can said there use an each " +
  "which she do how their if will up other about out many then them these so some her would " +
  "make like him into time has look two more write go see number no way could people my than").split(" ");
let seed = 12345;
function word() {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return WORDS[seed % WORDS.length];
}
function message(i) {
  const base = { type: "update", seq: i, room: "general", user: "alice", ts: 1733390000000 + i };
  let text = "";
  const room = 1024 - JSON.stringify({ ...base, text: "" }).length;
  while (text.length < room) text += word() + " ";
  return JSON.stringify({ ...base, text: text.slice(0, room) });
}

const held = new Promise((resolve) => {
  process.stdin.on("end", resolve);
  process.stdin.resume();
});
let done = 0;

async function one() {
  const ws = new WebSocket(url, { perMessageDeflate: deflate === "on" ? { threshold: 0 } : false });
  await new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); });
  const ext = ws.extensions;
  ws.on("close", () => {});
  for (let i = 0; i < perConn; i++) {
    const got = new Promise((resolve) => ws.once("message", resolve));
    ws.send(message(i));
    await got;
    if (paceMs > 0) await new Promise((resolve) => setTimeout(resolve, paceMs));
  }
  if (++done === conns && hold === "hold") console.log("ready");
  if (hold === "hold") {
    await held;
  }
  ws.close(1000);
  await new Promise((resolve) => ws.once("close", resolve));
  return ext;
}

const t0 = process.hrtime.bigint();
const exts = await Promise.all(Array.from({ length: conns }, one));
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ messages: conns * perConn, seconds: secs, extension: exts[0] }));
