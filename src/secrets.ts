/**
 * Every secret the run learns (database password, SSH key), registered the moment it is
 * known: the registry masks it in the GitHub log (through the mask callback) and redacts
 * it from every message this tool writes.
 */
export class Secrets {
  private readonly values = new Set<string>();

  private readonly mask: (value: string) => void;

  constructor(mask: (value: string) => void = () => {}) {
    this.mask = mask;
  }

  add(value: string | undefined): void {
    if (!value || this.values.has(value)) return;
    this.values.add(value);
    this.mask(value);
    // Multi-line secrets (keys) are masked line by line too, as they may be logged that way.
    for (const line of value.split(/\r?\n/)) {
      const trimmed = line.trim();
      if (trimmed.length >= 8 && !this.values.has(trimmed)) {
        this.values.add(trimmed);
        this.mask(trimmed);
      }
    }
  }

  /** The text with every known secret replaced by `***`. */
  redact(text: string): string {
    let out = text;
    // Longest first, so a secret containing another is replaced whole.
    for (const value of [...this.values].sort((a, b) => b.length - a.length))
      out = out.split(value).join('***');
    return out;
  }
}
