// A compressing echo upstream for the conformance and browser tests: Node
// `ws` with permessage-deflate (its defaults: context takeover, 15-bit
// windows, client_max_window_bits accepted when offered), echoing every
// message as it came (text as text, binary as binary). No size limit: the
// 9.* cases send up to 16 MiB.
//
//   node tests/conformance/deflate_echo.mjs
//
// Prints `deflate echo listening addr=127.0.0.1:PORT` once bound.
import WebSocket from "../node/node_modules/ws/index.js";

const wss = new WebSocket.WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  perMessageDeflate: { threshold: 0 },
  maxPayload: 0,
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {}); // the client judges the outcome
});
wss.on("listening", () => {
  console.log(`deflate echo listening addr=127.0.0.1:${wss.address().port}`);
});
