package token

import "context"

// For the tests outside the package: a manager on its own, without a pool.

type Options = options

func NewManager(o Options) *Manager { return newManager(o) }

func (m *Manager) Load(ctx context.Context) { m.load(ctx) }

func (m *Manager) Run(ctx context.Context) { m.run(ctx) }
