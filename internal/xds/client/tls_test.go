package client

import "crypto/tls"

func tlsConfigForTest() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS13} }
