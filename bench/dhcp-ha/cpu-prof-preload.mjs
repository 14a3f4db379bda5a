// Preloaded into the pxeha lab's Node processes by `bench:dhcp-ha --cpu-prof DIR` (through
// NODE_OPTIONS=--import, which allows no --cpu-prof): a V8 CPU profile of the whole process,
// written to $PXT_CPU_PROF_DIR/<pid>.cpuprofile when it exits (a SIGKILL writes nothing).
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.env.PXT_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // The in-process session answers synchronously, so this works in an exit handler.
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(path.join(dir, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
