// Refresh loops that never overlap: the next round is scheduled only after the previous
// one finished, so a slow server gets fewer requests, not a pile of them.

export interface Loop {
  stop(): void;
  /** Runs a round now (e.g. right after the user changed something). */
  kick(): void;
}

/** Runs `round` until stopped; it returns how long to wait before the next round. */
export function loop(round: () => Promise<number>): Loop {
  let stopped = false;
  let timer: number | undefined;
  let running = false;
  let again = false;

  const run = async (): Promise<void> => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    window.clearTimeout(timer);
    let delay = 5000;
    try {
      delay = await round();
    } catch (err) {
      console.error("refresh failed", err);
    }
    running = false;
    if (stopped) return;
    if (again) {
      again = false;
      delay = 0;
    }
    timer = window.setTimeout(() => void run(), delay);
  };

  void run();
  return {
    stop: () => {
      stopped = true;
      window.clearTimeout(timer);
    },
    kick: () => void run(),
  };
}

/** Calls `tick` every second, on the second boundary, for countdowns. */
export function everySecond(tick: () => void): () => void {
  const id = window.setInterval(tick, 1000);
  return () => window.clearInterval(id);
}
