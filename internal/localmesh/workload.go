package localmesh

import "github.com/zmesh/zmesh/internal/meshdir"

// Workload is one zmesh.dev Workload of the mesh directory: an app the
// local mesh starts behind its own proxy, or a gateway (meshdir reads
// them, for the analyzer too).
type Workload = meshdir.Workload

// GatewaySpec is what a gateway workload's proxy serves.
type GatewaySpec = meshdir.GatewaySpec
