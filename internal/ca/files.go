package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/zmesh/zmesh/internal/boundedio"
	"github.com/zmesh/zmesh/internal/pemcert"
)

// File names inside Config.DataDir. The cacerts names are Istio's, so an
// operator can drop in the same Secret contents they would give istiod.
const (
	// RootCertFile is the trust bundle, PEM roots; written on every start.
	RootCertFile = "root-cert.pem"
	// CACertFile, CAKeyFile and CertChainFile (with RootCertFile) are Istio's
	// plug-in ("cacerts") files: the signing CA, its key, and its chain up to
	// the root.
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	CertChainFile = "cert-chain.pem"
	// SelfSignedCertFile and SelfSignedKeyFile hold the root zmesh creates
	// when no cacerts are given. They have their own names so that a
	// half-copied cacerts set is never mistaken for them.
	SelfSignedCertFile = "zmesh-ca-cert.pem"
	SelfSignedKeyFile  = "zmesh-ca-key.pem"
	// TokenKeyFile is the HMAC key of bootstrap tokens.
	TokenKeyFile = "token-key"
)

// maxPEMFile bounds every file the CA reads; real ones are a few KiB.
const maxPEMFile = 1 << 20

// readBounded reads one of the CA's files; the old Stat-based bound let
// a file that grew while read, or a special file, through.
func readBounded(path string) ([]byte, error) {
	return boundedio.ReadFile(path, maxPEMFile)
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// writeFileAtomic writes data to path via a temporary file and a rename, so a
// crash never leaves a truncated key or bundle behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(name, path)
}

func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	certs, err := pemcert.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// readPrivateKey reads the first private key block of path (PKCS#8, SEC 1 or
// PKCS#1). Errors name the file, never its contents.
func readPrivateKey(path string) (crypto.Signer, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return parsePrivateKey(path, data)
}

func encodePrivateKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
