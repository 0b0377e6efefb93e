package http1_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/zmesh/zmesh/internal/proxy/http1"
)

func Example() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the app")
	}))
	defer app.Close()

	// The fallback takes what the fast path does not: upgrades, large or
	// streamed bodies, Expect: 100-continue.
	fallback := &http.Transport{Proxy: nil, DisableCompression: true}
	tr, err := http1.New(http1.Config{Addr: app.Listener.Addr().String(), Fallback: fallback})
	if err != nil {
		panic(err)
	}
	defer tr.CloseIdleConnections() // the fallback's too

	resp, err := (&http.Client{Transport: tr}).Post(app.URL, "text/plain", strings.NewReader("hi"))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
	// Output: 200 hello from the app
}
