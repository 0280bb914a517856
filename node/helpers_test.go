package node_test

import "github.com/allegro-mesh/allegro/tempo/devkit"

// chainID is the chain of the in-memory test networks.
const chainID = devkit.ChainID
