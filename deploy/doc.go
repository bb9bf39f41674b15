// Package deploy holds the ways to run panopto-sidecar beside OnTrack: the
// docker compose files that join OnTrack's own production deployment
// (compose/: a compose override, OnTrack's nginx location block, an example
// config), the Kubernetes manifests for a native sidecar (kubernetes/), and
// the tests that read them, with the Dockerfile, the way an operator would,
// and run them with the real binary and a real nginx.
package deploy
