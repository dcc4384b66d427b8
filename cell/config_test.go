package cell

import (
	"crypto/ed25519"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigRoundTripsThroughEnviron(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	cpPub, _, _ := ed25519.GenerateKey(nil)
	oldPub, _, _ := ed25519.GenerateKey(nil)
	want := Config{
		TenantID: "t1", TenantKey: "acme", TenantName: "Acme", ListenAddr: "127.0.0.1:9000",
		Hosts: []string{"acme.localhost"}, PublicURL: "http://acme.localhost:8080", AllowedOrigins: []string{"https://acme.test"},
		MongoURI: "mongodb://127.0.0.1:1/", Database: "t_t1", S3Endpoint: "http://127.0.0.1:2", S3PublicEndpoint: "http://127.0.0.1:2",
		S3Region: "us-east-1", S3Bucket: "atende", S3Prefix: "t/t1/", S3AccessKey: "a", S3SecretKey: "s",
		SigningKey: key, SigningKeyID: "k1", ControlPlaneKey: cpPub,
		PreviousKeys:   []VerificationKey{{KID: "k0", PublicKey: oldPub, RetiredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}},
		BootstrapUsers: []BootstrapUser{{Email: "a@acme.test", Name: "A", Roles: []string{RoleTenantAdmin}, PasswordHash: "$2a$10$x"}},
		PresignTTL:     time.Minute, MaxUploadBytes: 1000, MaxAgents: 7, UploadContentTypes: []string{"image/png"}, LogLevel: "warn",
		Tenancy: TenancyCompat,
	}
	env := map[string]string{}
	for _, kv := range want.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	got, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestConfigFromEnvNamesEveryProblem(t *testing.T) {
	env := map[string]string{EnvPresignTTL: "10m", EnvSigningKey: "bm90LWEta2V5"}
	_, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("empty configuration accepted")
	}
	for _, name := range []string{EnvTenantID, EnvMongoURI, EnvHosts, EnvSigningKey, EnvPresignTTL, EnvControlPlaneKey} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestConfigFromEnvChecksPreviousKeys(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	cpPub, _, _ := ed25519.GenerateKey(nil)
	base := Config{TenantID: "t1", TenantKey: "acme", ListenAddr: "127.0.0.1:9000", Hosts: []string{"acme.localhost"},
		PublicURL: "http://acme.localhost", MongoURI: "mongodb://x/", Database: "t_t1", S3Endpoint: "http://s3", S3Bucket: "b",
		S3Prefix: "t/t1/", S3AccessKey: "a", S3SecretKey: "s", SigningKey: key, SigningKeyID: "k1", ControlPlaneKey: cpPub}
	for name, raw := range map[string]string{
		"not JSON":           "nope",
		"short key":          `[{"kid":"k0","publicKey":"AAAA","retiredAt":"2026-01-01T00:00:00Z"}]`,
		"active kid reused":  `[{"kid":"k1","publicKey":"` + b64(cpPub) + `","retiredAt":"2026-01-01T00:00:00Z"}]`,
		"kid missing":        `[{"publicKey":"` + b64(cpPub) + `","retiredAt":"2026-01-01T00:00:00Z"}]`,
		"duplicate previous": `[{"kid":"k0","publicKey":"` + b64(cpPub) + `"},{"kid":"k0","publicKey":"` + b64(cpPub) + `"}]`,
	} {
		env := map[string]string{}
		for _, kv := range base.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		env[EnvPreviousKeys] = raw
		if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), EnvPreviousKeys) {
			t.Errorf("%s: error %v, want one naming %s", name, err, EnvPreviousKeys)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestConfigFromEnvTenancy(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	cpPub, _, _ := ed25519.GenerateKey(nil)
	base := Config{TenantID: "t1", TenantKey: "acme", ListenAddr: "127.0.0.1:9000", Hosts: []string{"acme.localhost"},
		PublicURL: "http://acme.localhost", MongoURI: "mongodb://x/", Database: "t_t1", S3Endpoint: "http://s3", S3Bucket: "b",
		S3Prefix: "t/t1/", S3AccessKey: "a", S3SecretKey: "s", SigningKey: key, SigningKeyID: "k1", ControlPlaneKey: cpPub}
	for _, tc := range []struct {
		raw, want string
		ok        bool
	}{
		{"", TenancyStrict, true}, {"strict", TenancyStrict, true}, {"compat", TenancyCompat, true},
		{" Compat ", TenancyCompat, true}, {"lenient", "", false}, {"off", "", false},
	} {
		env := map[string]string{}
		for _, kv := range base.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		env[EnvTenancy] = tc.raw
		got, err := ConfigFromEnv(func(k string) string { return env[k] })
		if !tc.ok {
			if err == nil || !strings.Contains(err.Error(), EnvTenancy) {
				t.Errorf("%q: error %v, want one naming %s", tc.raw, err, EnvTenancy)
			}
			continue
		}
		if err != nil || got.Tenancy != tc.want {
			t.Errorf("%q: tenancy %q, error %v; want %q", tc.raw, got.Tenancy, err, tc.want)
		}
	}
}
