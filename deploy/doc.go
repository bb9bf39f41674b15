// Package deploy holds the Kubernetes manifests (kubernetes/) for running
// panopto-sidecar as a native sidecar beside OnTrack, and the tests that
// read them, with the Dockerfile, the way a cluster administrator would.
package deploy
