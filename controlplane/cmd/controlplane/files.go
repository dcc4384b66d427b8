package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Files under the data directory.
const (
	keyFile            = "controlplane.key"
	tokenFile          = "superadmin.token"
	s3CredentialsFile  = "s3-credentials.json"
	devCredentialsFile = "dev-credentials.json"
	runtimeFile        = "runtime.json"
)

// writePrivate writes data to path with mode 0600 through a temporary file and a rename, so a
// reader never sees half a file.
func writePrivate(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// writeJSON writes v as indented JSON with mode 0600.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(path, append(data, '\n'))
}

// loadOrCreateKey reads the control plane's Ed25519 key (PKCS #8 PEM) from path, generating and
// writing it (mode 0600) the first time.
func loadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		if err := writePrivate(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: not a PEM file", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

// s3Credentials are the embedded S3 server's root credentials.
type s3Credentials struct {
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
}

// loadOrCreateS3Credentials reads the embedded S3 server's root credentials from path,
// generating them (random, hex) and writing them (mode 0600) the first time.
func loadOrCreateS3Credentials(path string) (s3Credentials, error) {
	var c s3Credentials
	data, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(data, &c); err != nil || c.AccessKey == "" || c.SecretKey == "" {
			return c, fmt.Errorf("%s: not valid credentials", path)
		}
		return c, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return c, err
	}
	ak, sk := make([]byte, 10), make([]byte, 20)
	_, _ = rand.Read(ak)
	_, _ = rand.Read(sk)
	c = s3Credentials{AccessKey: "atende" + hex.EncodeToString(ak), SecretKey: hex.EncodeToString(sk)}
	return c, writeJSON(path, c)
}

// devCredentials is the content of dev-credentials.json.
type devCredentials struct {
	Tenant string      `json:"tenant"`
	URL    string      `json:"url"`
	Admin  credentials `json:"admin"`
	Agent  credentials `json:"agent"`
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// runtimeInfo is the content of runtime.json: the concrete addresses the control plane serves.
type runtimeInfo struct {
	API   string `json:"api"`
	Edge  string `json:"edge"`
	Mongo string `json:"mongo"`
	S3    string `json:"s3"`
}
