// Package p2p is the transport layer of the validator mesh (SPEC §5,
// protocol version 2): a go-libp2p host (TCP and QUIC, ed25519 identity),
// gossipsub with the committee's topics carrying frames, staged frame
// validation, and delivery of decoded objects to the caller. Domain logic
// (signing, state, the bulletin board) plugs in through the
// Register*Validator and On* methods of Mesh.
//
// # Topics and frames
//
//	/allegro/<chain_id>/<epoch>/tx/2          TxFrame        validators only
//	/allegro/<chain_id>/<epoch>/bulletin/2    BulletinFrame  validators only
//	/allegro/<chain_id>/<epoch>/qc/<shard>/2  QCFrame        open
//
// shard = recipient[0] % QCShards. A node whose key is in the committee is a
// validator and joins every topic; any other node is a light client and
// joins only the QC shards it asks for.
//
// A frame is one message carrying many objects of one kind, published by
// one validator and naming it with a sequence number. Frames are not
// signed: every object authenticates itself, so the header is
// informational. Each topic has one publisher loop per node (framer.go):
// publishing queues an object, and the loop drains the queue into one frame
// whenever it wakes, so frames hold one object at light load and grow under
// load without a timer.
//
// Validators-only topics are closed four ways: a peer filter keeps
// outsiders out of the mesh, gossip and IWANT replies; a subscription
// filter keeps them out of the topic's peer set (which flood publishing
// reads); an RPC inspector drops what a non-member pushes on them before
// pubsub records the message as seen, so such a copy can never shadow a
// genuine one; and the topic validator still rejects any frame forwarded
// by, or naming as publisher, a non-member.
//
// # Validation
//
// Every topic runs one wrapper (recover, timeout, metrics, rate-limited
// rejection logs) around a staged pipeline: size and decode (Reject),
// membership of sender and publisher, own certificates only on the
// bulletin, chain and shard (Reject), nothing new in the frame (Ignore,
// before any signature is checked; a peer outside the committee, and at a
// light client a member too, has a budget of such frames, past which they
// are rejected: dupbudget.go), every signature of the frame verified
// in one batch under ZIP215 (Reject on any failure: the whole frame), then
// the caller's stateful func per object (Reject rejects the frame; Ignore
// and Soft leave the object out). The objects new to this node are stored
// in msg.ValidatorData and handed to handlers one by one; this node's own
// frames carry their objects and skip decoding and verification.
//
// # Message ids and duplicates
//
// A message id is a digest of the whole frame, bound to the topic
// (msgid.go): a copy a validator rejects shadows nothing but itself.
// Objects are deduplicated one by one after validation (dedup.go): an
// object accepted before is not delivered again, and a frame of nothing
// but such objects is ignored unverified.
//
// # Flow control and robustness
//
// Queues are sized for bursts of 10,000 payments; the publisher loops wait
// (bounded) while a committee peer's outbound queue is congested
// (backpressure.go), which is when frames grow; every drop is counted by a
// pubsub tracer (tracer.go). Bootstrap peers are redialed with jittered
// exponential backoff (bootstrap.go), and pubsub links that
// go-libp2p-pubsub v0.19 can leave broken on a live connection are repaired
// by reconnecting the peer (repair.go).
package p2p
