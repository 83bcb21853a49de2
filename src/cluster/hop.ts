/**
 * Marks a request one replica sent to another (its owner): the receiver serves it itself and never
 * forwards it again, so two replicas that disagree about membership cannot bounce a request.
 */
export const HOP_HEADER = 'x-oci-registry-hop';
