package cell

import (
	"crypto/ed25519"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigRoundTripsThroughEnviron(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	cpPub, _, _ := ed25519.GenerateKey(nil)
	want := Config{
		TenantID: "t1", TenantKey: "acme", TenantName: "Acme", ListenAddr: "127.0.0.1:9000",
		Hosts: []string{"acme.localhost"}, PublicURL: "http://acme.localhost:8080", AllowedOrigins: []string{"https://acme.test"},
		MongoURI: "mongodb://127.0.0.1:1/", Database: "t_t1", S3Endpoint: "http://127.0.0.1:2", S3PublicEndpoint: "http://127.0.0.1:2",
		S3Region: "us-east-1", S3Bucket: "atende", S3Prefix: "t/t1/", S3AccessKey: "a", S3SecretKey: "s",
		SigningKey: key, SigningKeyID: "k1", ControlPlaneKey: cpPub,
		BootstrapUsers: []BootstrapUser{{Email: "a@acme.test", Name: "A", Roles: []string{RoleTenantAdmin}, PasswordHash: "$2a$10$x"}},
		PresignTTL:     time.Minute, MaxUploadBytes: 1000, UploadContentTypes: []string{"image/png"}, LogLevel: "warn",
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
