// What every tar of ours is told: the options that create (and, for a restore, extract)
// everything a backup must keep, whoever reads it by hand later.

/** Numeric owners, modes, ACLs and every xattr namespace. */
export const TAR_METADATA_FLAGS = ['--numeric-owner', '--acls', '--xattrs', '--xattrs-include=*'];
