import type { IO } from "./command.js";

/** barWidth is the number of cells of the progress bar. */
const barWidth = 30;

/**
 * Progress turns an activation's progress lines into what suits the terminal. On a TTY (io.status
 * set) each "[i/N] …" line moves one progress bar, redrawn in place, with failures and every other
 * line printed above it in full; elsewhere (a pipe, a log file) every line is printed as it is.
 */
export class Progress {
  readonly #io: IO;
  #done = 0;
  #total = 0;
  #failed = 0;
  #shown = false;

  constructor(io: IO) {
    this.#io = io;
  }

  /** line takes one progress line of the Coordinator. */
  line(text: string): void {
    const status = this.#io.status;
    const m = /^\[(\d+)\/(\d+)\] (FAILED)?/.exec(text);
    if (!status || !m) {
      this.#clear();
      this.#io.err(`  ${text}`);
      this.#redraw();
      return;
    }
    this.#done = Number(m[1]);
    this.#total = Number(m[2]);
    if (m[3]) {
      this.#failed++;
      this.#clear();
      this.#io.err(`  ${text}`);
    }
    this.#redraw();
  }

  /** end finishes the bar (a TTY keeps its last state on its own line). */
  end(): void {
    if (this.#shown) this.#io.err("");
    this.#shown = false;
  }

  #clear(): void {
    if (this.#shown) this.#io.status?.("");
  }

  #redraw(): void {
    const status = this.#io.status;
    if (!status || this.#total === 0) return;
    const filled = Math.round((this.#done / this.#total) * barWidth);
    status(`  [${"#".repeat(filled)}${".".repeat(barWidth - filled)}] ${this.#done}/${this.#total}${this.#failed > 0 ? `, ${this.#failed} failed` : ""}`);
    this.#shown = true;
  }
}
