// One Socket.IO 4 application instance, run as a child process by
// tests/node/socketio.mjs (one process per instance, so a test can start N of
// them on N ports behind one route, or kill one).
//
//   node socketio-app.mjs NAME
//
// Listens on 127.0.0.1:0 and prints one JSON line {"event":"listening",...}
// with its port. It also prints a JSON line for every engine.io connection
// error (e.g. "Session ID unknown" when a polling request of a session lands
// on an instance that did not open it), so tests can see what the server saw.
// Exits when its stdin closes: the test process that started it is gone.
//
// Events it serves:
//   on connect                  emits 'hello' {instance}
//   'echo' (payload, ack)       ack({instance, payload})
//   'join' (room, ack)          joins room, ack({instance, room})
//   'shout' (room, payload)     emits 'shout' {instance, payload} to the room
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const instance = process.argv[2] ?? 'app';
const http = createServer();
const io = new Server(http, {
  // Generous: a loaded CI machine must not turn a slow poll into a timeout.
  pingInterval: 25_000,
  pingTimeout: 60_000,
});

function report(obj) {
  process.stdout.write(`${JSON.stringify({ instance, ...obj })}\n`);
}

io.engine.on('connection_error', (err) => {
  report({ event: 'connection_error', code: err.code, message: err.message });
});

io.on('connection', (socket) => {
  socket.emit('hello', { instance });
  socket.on('echo', (payload, ack) => {
    if (typeof ack === 'function') ack({ instance, payload });
  });
  socket.on('join', (room, ack) => {
    socket.join(String(room));
    if (typeof ack === 'function') ack({ instance, room });
  });
  socket.on('shout', (room, payload) => {
    io.to(String(room)).emit('shout', { instance, payload });
  });
});

http.listen(0, '127.0.0.1', () => {
  report({ event: 'listening', port: http.address().port });
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
