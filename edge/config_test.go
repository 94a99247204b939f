package edge_test

import "messenger/edge"

type edgeCfg = edge.Config

func edgeConfig(f func(*edgeCfg)) edge.Config {
	var c edge.Config
	f(&c)
	return c
}
