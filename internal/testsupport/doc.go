// Package testsupport holds the helpers the module's tests share: a
// goroutine-safe buffer for captured output, a settable clock, a polling
// wait, and throwaway certificates. It is imported by tests (and by the
// test-server packages such as pebbletest) only; nothing in the product
// imports it.
package testsupport
