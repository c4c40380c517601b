import manifest from '../../package.json' with { type: 'json' };

/** The CLI's version: the package's, as `cleanroom --version` prints it with the Node running it. */
export function cliVersion(): string {
  return `${manifest.version} (node ${process.versions.node})`;
}
