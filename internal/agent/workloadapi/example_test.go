package workloadapi_test

import (
	"context"
	"log"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/workloadapi"
)

// Serving an agent's identity to the SPIFFE-aware apps of the same uid; an
// app then points go-spiffe at it with
// workloadapi.WithAddr("unix:///run/zmesh/httpbin/workload.sock").
func Example() {
	var ag *agent.Agent // from agent.New, running
	srv, err := workloadapi.New(workloadapi.Config{
		SocketPath:  "/run/zmesh/httpbin/workload.sock",
		Source:      ag,
		TrustDomain: ag.ID().TrustDomain(),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background() // cancel to stop and remove the socket
	if err := srv.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
