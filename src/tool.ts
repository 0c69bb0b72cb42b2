import pkg from '../package.json' with { type: 'json' };

/** This tool's name and version, as recorded in every manifest. */
export const TOOL = { name: 'owncloud-backup', version: pkg.version } as const;
