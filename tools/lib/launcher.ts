/**
 * Runs `gone` once the process that started this one has gone away.
 *
 * Why `npm run dev` needs it: stopped with SIGTERM (an editor's stop button, a process manager,
 * `kill <npm's pid>`), npm and the shell it runs the script in exit, but the signal does not
 * reach the script's own processes; the dev stack (gateway, proxy, wrangler, workerd) kept
 * running and holding its ports, so the next `npm run dev` failed. Orphaned, a process gets a
 * new parent, which a check every `everyMs` notices. The script must be the shell's direct
 * child for that (`node --import tsx tools/dev.ts`, not `tsx tools/dev.ts`, whose CLI wrapper
 * would be the parent and outlive the shell). Ctrl-C needs none of this: the terminal signals
 * the whole process group.
 *
 * @example
 *   onLauncherGone(() => void stop(0));
 */
export function onLauncherGone(gone: () => void, everyMs = 1000): void {
  const launcher = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === launcher) return;
    clearInterval(timer);
    gone();
  }, everyMs);
  timer.unref();
}
