import { hkdfSync, randomBytes } from "node:crypto";
import { InvalidArgumentError } from "./errors.js";

/** masterSecretMinBytes and masterSecretMaxBytes bound the admin's master secret (DESIGN.md). */
export const masterSecretMinBytes = 16;
export const masterSecretMaxBytes = 64;

/** stateDiskKeyBytes is the length of a Node's state-disk key. */
export const stateDiskKeyBytes = 32;

/** clusterIDBytes is the length of the random cluster ID. */
export const clusterIDBytes = 32;

/** checkMasterSecret throws InvalidArgumentError unless the secret has an allowed length. It never echoes the secret. */
export function checkMasterSecret(masterSecret: Uint8Array | undefined): asserts masterSecret is Uint8Array {
  const n = masterSecret?.length ?? 0;
  if (n < masterSecretMinBytes || n > masterSecretMaxBytes) {
    throw new InvalidArgumentError(
      `masterSecret: must be ${masterSecretMinBytes} to ${masterSecretMaxBytes} bytes, got ${n}`,
    );
  }
}

/** deriveOwnerID returns HKDF-SHA256(masterSecret, salt="", info="id", 32). */
export function deriveOwnerID(masterSecret: Uint8Array): Buffer {
  checkMasterSecret(masterSecret);
  return Buffer.from(hkdfSync("sha256", masterSecret, Buffer.alloc(0), Buffer.from("id"), 32));
}

/** newClusterID returns 32 fresh random bytes. */
export function newClusterID(): Buffer {
  return randomBytes(clusterIDBytes);
}

/** deriveDataKey returns HKDF-SHA256(masterSecret, salt=clusterID, info="key-"+keyID, length): a data key, never a disk key (see stateDiskKey). */
export function deriveDataKey(masterSecret: Uint8Array, clusterID: Uint8Array, keyID: string, length: number): Buffer {
  checkMasterSecret(masterSecret);
  checkClusterID(clusterID);
  checkKeyID(keyID);
  if (!Number.isInteger(length) || length < 16 || length > 255 * 32) {
    throw new InvalidArgumentError(`length: data keys are 16 to ${255 * 32} bytes, got ${length}`);
  }
  return Buffer.from(hkdfSync("sha256", masterSecret, clusterID, Buffer.from(`key-${keyID}`), length));
}

const keyIDPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** checkKeyID throws unless keyID is 1-128 characters of [A-Za-z0-9._:-]. */
export function checkKeyID(keyID: string): void {
  if (typeof keyID !== "string" || !keyIDPattern.test(keyID)) {
    throw new InvalidArgumentError("dataKeyID: must be 1 to 128 characters of letters, digits and ._:-");
  }
}

const luksUUIDPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** checkDiskUUID throws unless uuid is a lower-case LUKS UUID as `cryptsetup luksUUID` prints it. */
export function checkDiskUUID(uuid: string, field = "stateDiskUUID"): void {
  if (typeof uuid !== "string" || !luksUUIDPattern.test(uuid)) {
    throw new InvalidArgumentError(`${field}: must be a lower-case UUID like 0a1b2c3d-…, got ${JSON.stringify(String(uuid).slice(0, 40))}`);
  }
}

/**
 * stateDiskKey derives the state-disk key of the disk with LUKS UUID `diskUUID`:
 * HKDF-SHA256(masterSecret, salt=clusterID, info="disk-" + uuid, 32). Its own label ("disk-", data
 * keys use "key-"), so no data key (vpnapi GetDataKey, whatever its ID) is ever a disk key.
 */
export function stateDiskKey(masterSecret: Uint8Array, clusterID: Uint8Array, diskUUID: string): Buffer {
  checkMasterSecret(masterSecret);
  checkClusterID(clusterID);
  checkDiskUUID(diskUUID);
  return Buffer.from(hkdfSync("sha256", masterSecret, clusterID, Buffer.from(`disk-${diskUUID}`), stateDiskKeyBytes));
}

function checkClusterID(clusterID: Uint8Array): void {
  if (clusterID.length !== clusterIDBytes) {
    throw new InvalidArgumentError(`clusterID: must be ${clusterIDBytes} bytes, got ${clusterID.length}`);
  }
}
