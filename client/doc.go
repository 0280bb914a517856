// Package client is the wallet side of the Allegro mesh: it builds and signs
// FastPay payments, submits them to a validator sidecar and returns the
// quorum certificate (QC) that proves the payment will settle.
//
// # Building payments
//
// NewEVMPayment signs an EIP-1559 TIP-20 transfer (the format the embedded
// development chain can settle); NewTempoPayment signs a Tempo type-0x76
// transaction with a nonce key. Both return a ready SubmitFastPayRequest whose
// nonce, expiry, format and overlay.payment agree with the signed transaction.
// WithParent spends funds received in a payment that has a QC but is not yet
// on chain (a chained payment).
//
// # Submitting
//
// A Client submits to ONE sidecar over the SubmitFastPayStream gRPC call; the
// mesh takes the payment to every validator and the entry sidecar streams the
// certificates and the QC back. Every certificate and the QC are verified
// against the committee before they are reported or returned: a Byzantine
// sidecar cannot make the client accept a forged QC. Transport failures and
// timeouts are retried with the same request (the same client_request_id and
// the same signed transaction, so the retry is idempotent) on the next
// endpoint. FanOut is the alternative design used by benchmarks: submit to
// every validator and assemble the QC locally.
//
// # Nonces
//
// A Wallet hands out nonces durably: a reserved nonce is journaled and fsynced
// before it is returned, so after a crash it is never handed out again, and
// the signed request is journaled before it is submitted, so it can be
// resubmitted unchanged after a restart (see Wallet).
package client
