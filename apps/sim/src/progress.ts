/** A progress bar on stderr, only when stderr is a terminal (never in pipes, CI or tests). */
export class Progress {
  private last = -1;
  private readonly tty = !!process.stderr.isTTY;
  constructor(private readonly label: string) {}
  update(fraction: number): void {
    if (!this.tty) return;
    const pct = Math.floor(fraction * 100);
    if (pct === this.last) return;
    this.last = pct;
    const width = 30;
    const fill = Math.round((pct / 100) * width);
    process.stderr.write(`\r${this.label.padEnd(6)} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(pct).padStart(3)}%`);
  }
  done(note = ''): void {
    if (!this.tty) return;
    process.stderr.write(`\r${this.label.padEnd(6)} [${'#'.repeat(30)}] 100% ${note}\n`);
  }
}
