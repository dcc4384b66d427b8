package cell

import (
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
)

// TestConfigFromEnvTrustedProxies: the trusted proxies travel through the environment as a
// comma-separated list of IPs and CIDR ranges; anything else is refused, naming the variable.
func TestConfigFromEnvTrustedProxies(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	cpPub, _, _ := ed25519.GenerateKey(nil)
	base := Config{TenantID: "t1", TenantKey: "acme", ListenAddr: "127.0.0.1:9000", Hosts: []string{"acme.localhost"},
		PublicURL: "http://acme.localhost", MongoURI: "mongodb://x/", Database: "t_t1", S3Endpoint: "http://s3", S3Bucket: "b",
		S3Prefix: "t/t1/", S3AccessKey: "a", S3SecretKey: "s", SigningKey: key, SigningKeyID: "k1", ControlPlaneKey: cpPub}
	for _, tc := range []struct {
		proxies []string
		ok      bool
	}{
		{nil, true},
		{[]string{"172.30.57.0/24"}, true},
		{[]string{"10.0.0.7", "fd00::/64", "192.168.0.0/16"}, true},
		{[]string{"traefik"}, false},
		{[]string{"10.0.0.0/33"}, false},
		{[]string{"10.0.0.0/8", "300.1.1.1"}, false},
	} {
		cfg := base
		cfg.TrustedProxies = tc.proxies
		env := map[string]string{}
		for _, kv := range cfg.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		got, err := ConfigFromEnv(func(k string) string { return env[k] })
		if !tc.ok {
			if err == nil || !strings.Contains(err.Error(), EnvTrustedProxies) {
				t.Errorf("%q: error %v, want one naming %s", tc.proxies, err, EnvTrustedProxies)
			}
			continue
		}
		if err != nil || !slices.Equal(got.TrustedProxies, tc.proxies) {
			t.Errorf("%q: got %q, error %v", tc.proxies, got.TrustedProxies, err)
		}
	}
}
