// Integration tests call @actions/artifact in the test process (to download what the action
// uploaded); like every @actions package it writes `::debug::` workflow commands to stdout,
// which the runner hides and a terminal does not: hundreds of lines of HTTP headers. They
// are dropped here, so the test log shows the tests. OCB_TEST_DEBUG=1 keeps them.
if (!process.env.OCB_TEST_DEBUG) {
  const write = process.stdout.write.bind(process.stdout);
  const quiet = (chunk: unknown, ...rest: unknown[]): boolean => {
    if (typeof chunk === 'string' && /^::(debug|add-mask)::/.test(chunk)) {
      const callback = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
      callback?.();
      return true;
    }
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
  };
  process.stdout.write = quiet as typeof process.stdout.write;
}
