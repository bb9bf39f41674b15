// Package login connects a person's Panopto account to the sidecar: the
// authorization-code flow a browser goes through (state, PKCE, nonce, and
// the binding to the browser that started it), the single-use login tickets
// OnTrack hands its students (signed with a key derived from the client
// secret, redeemed once across replicas by a mark in the token store), and
// the verification of the id_token that names the Panopto user (go-oidc).
// The grant it yields is installed by package token.
package login
