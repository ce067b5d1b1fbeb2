/** MarkerState is what the peer's "initialized" marker shows. */
export type MarkerState =
  | { kind: "fresh" }
  | { kind: "activated"; ownerMeasurement: Buffer; clusterMeasurement: Buffer }
  | { kind: "inconsistent"; detail: string };

/**
 * InitMarker is the hardware record that a peer left AcceptingInit: with a TPM, PCR 11 extended with
 * the owner ID and PCR 12 with the cluster ID. A marked peer can never look fresh again, so it can
 * never be activated twice.
 */
export interface InitMarker {
  /** read tells whether the peer was marked before. */
  read(): Promise<MarkerState>;
  /** mark records ownerID and clusterID; it must complete before any other activation step. */
  mark(ownerID: Uint8Array, clusterID: Uint8Array): Promise<void>;
}
