package localmesh

import (
	"net"
	"strconv"
	"testing"

	"github.com/zmesh/zmesh/internal/proxy"
)

func TestAppProbersIsWhatTheProxyAccepts(t *testing.T) {
	for _, app := range []string{"127.0.0.1:40001", "10.9.0.2:8080"} {
		js := appProbers(member{app: app})
		ap, err := proxy.ParseAppProbers([]byte(js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		_, port, _ := net.SplitHostPort(app)
		if pr := ap[appReadyz]; pr == nil || pr.TCPSocket == nil || strconv.Itoa(int(pr.TCPSocket.Port)) != port {
			t.Fatalf("%s: %+v", js, ap)
		}
	}
}
