// Package p2p is the transport layer of the validator mesh (SPEC §5): a
// go-libp2p host (TCP and QUIC, ed25519 identity), gossipsub with the
// committee's topics, staged topic validation, and delivery of decoded
// objects to the caller. Domain logic (signing, state, the bulletin board)
// plugs in through the Register*Validator and On* methods of Mesh.
//
// # Topics
//
//	/allegro/<chain_id>/<epoch>/tx/1          SubmitFastPayRequest  validators only
//	/allegro/<chain_id>/<epoch>/bulletin/1    BulletinMessage       validators only
//	/allegro/<chain_id>/<epoch>/qc/<shard>/1  QuorumCertificate     open
//
// shard = recipient[0] % QCShards. A node whose key is in the committee is a
// validator and joins every topic; any other node is a light client and
// joins only the QC shards it asks for.
//
// Validators-only topics are closed four ways: a peer filter keeps
// outsiders out of the mesh, gossip and IWANT replies; a subscription
// filter keeps them out of the topic's peer set (which flood publishing
// reads); an RPC inspector drops what a non-member pushes on them before
// pubsub records the message as seen, so such a copy can never shadow a
// genuine one; and the topic validator still rejects any message forwarded
// by a non-member.
//
// # Validation
//
// Every topic runs one wrapper (recover, timeout, metrics, rate-limited
// rejection logs) around a staged pipeline: size and decode (Reject), an
// object accepted before (Ignore), stateless checks — sender membership,
// certificate signature, QC quorum and signatures, QC shard, chain id
// (Reject) — then the caller's stateful func (its verdict; errors marked
// Soft become Ignore). The decoded object is
// stored in msg.ValidatorData and handed to handlers; this node's own
// publishes carry their object and skip decoding and verification.
//
// # Message ids and duplicates
//
// A message id is a digest of the whole payload, bound to the topic
// (msgid.go): a copy a validator rejects shadows nothing but itself. The
// same object in other bytes — a QC of one transaction from another signer
// subset, a re-encoded certificate — is ignored after the first copy is
// accepted, before its signatures are verified (dedup.go).
//
// # Flow control and robustness
//
// Queues are sized for 10,000-message bursts; local publishes wait (bounded)
// while a committee peer's outbound queue is congested (backpressure.go);
// every drop is counted by a pubsub tracer (tracer.go). Bootstrap peers are
// redialed with jittered exponential backoff (bootstrap.go), and pubsub
// links that go-libp2p-pubsub v0.19 can leave broken on a live connection
// are repaired by reconnecting the peer (repair.go).
package p2p
