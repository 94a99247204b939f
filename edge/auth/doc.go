// Package auth implements the token rules of the client contract.
//
// A token is a JWT whose sub claim is the user id and whose exp claim is
// mandatory. A Verifier accepts exactly one algorithm, the one it was
// configured with (HS256 with a shared secret, or EdDSA with an Ed25519
// public key), so a token carrying any other alg, "none" included, is
// rejected before its signature is even looked at. Beyond a good signature,
// Verify requires exp to be present, a JSON number (so are nbf and iat when
// given) and in the future (no clock leeway), exp no further than the
// maximum lifetime (WithMaxTTL, DefaultMaxTTL) from now nor from iat, aud and
// iss to match when pinned (WithAudience, WithIssuer), and sub to satisfy
// proto.ValidID. Every rejection wraps ErrUnauthorized, so callers
// can map all of them to one response without inspecting reasons.
//
// A Signer mints tokens that a Verifier built from the matching key material
// accepts. Verifier and Signer hold only immutable state after construction
// and are safe for concurrent use by multiple goroutines.
//
// The user id grammar is proto.ValidID (package messenger/client/proto),
// shared with the other identifiers of the contract (device, conversation
// and send ids).
package auth
