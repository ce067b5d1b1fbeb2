/**
 * StateDisk is the peer's LUKS2 state disk. Implementations serialize their calls (libcryptsetup is
 * not thread-safe) and never write keys to logs, errors or command lines.
 */
export interface StateDisk {
  /** uuid returns the disk's LUKS UUID, lower-case as `cryptsetup luksUUID` prints it. */
  uuid(): Promise<string>;
  /**
   * updatePassphrase replaces the passphrase that opens the disk now (the initial key) with `key`.
   * On failure the old passphrase still opens the disk.
   */
  updatePassphrase(key: Uint8Array): Promise<void>;
  /**
   * unlock opens the disk with `key` after a reboot (the key the Coordinator delivered). It throws
   * when the key does not open the disk. The key is never written anywhere by the caller.
   */
  unlock(key: Uint8Array): Promise<void>;
}
