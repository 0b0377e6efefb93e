package echo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/zmesh/zmesh/internal/echo"
)

// Run the app on a free loopback port and read its echo of a request, as
// a test behind a proxy would.
func Example() {
	s, err := echo.New(echo.Config{Listen: "127.0.0.1:0", Name: "backend"})
	if err != nil {
		panic(err)
	}
	if err := s.Listen(); err != nil { // Addr is known from here on
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { stop(); <-done }()

	req, _ := http.NewRequest("GET", "http://"+s.Addr().String()+"/headers", nil)
	req.Header.Set("X-Forwarded-Client-Cert", "URI=spiffe://cluster.local/ns/web/sa/frontend")
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var e echo.Echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		panic(err)
	}
	fmt.Println(e.Name, e.Method, e.Path)
	fmt.Println(e.Headers["X-Forwarded-Client-Cert"][0])
	// Output:
	// backend GET /headers
	// URI=spiffe://cluster.local/ns/web/sa/frontend
}
