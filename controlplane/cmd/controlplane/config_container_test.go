package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLoadConfigContainerSettings covers the settings of a deployment behind Traefik in
// containers (docker-compose.yml): trusted proxies for cells, the network cells join, and the
// edge's URL as Traefik reaches it.
func TestLoadConfigContainerSettings(t *testing.T) {
	nope := filepath.Join(t.TempDir(), "nope") // the docker driver needs no cell binary
	for _, tc := range []struct {
		name  string
		env   map[string]string
		errs  []string // substrings of the error; none means valid
		check func(t *testing.T, c config)
	}{
		{name: "unset", env: map[string]string{envCellBin: nope, envDriver: driverDocker}, check: func(t *testing.T, c config) {
			if c.CellTrustedProxies != nil || c.DockerNetwork != "" || c.EdgeInternalURL != "" {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "compose", env: map[string]string{envCellBin: nope, envDriver: driverDocker,
			envCellTrustedProxies: " 172.30.57.0/24, 10.0.0.7 ,", envDockerNetwork: "atende", envEdgeInternalURL: "http://controlplane:8080/"},
			check: func(t *testing.T, c config) {
				if !slices.Equal(c.CellTrustedProxies, []string{"172.30.57.0/24", "10.0.0.7"}) || c.DockerNetwork != "atende" ||
					c.EdgeInternalURL != "http://controlplane:8080" {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "invalid", env: map[string]string{envCellBin: nope, envDriver: driverDocker,
			envCellTrustedProxies: "traefik", envEdgeInternalURL: "controlplane:8080"},
			errs: []string{envCellTrustedProxies, envEdgeInternalURL}},
		{name: "edge URL with a path", env: map[string]string{envCellBin: nope, envDriver: driverDocker, envEdgeInternalURL: "http://cp:8080/edge"},
			errs: []string{envEdgeInternalURL}},
		{name: "network without the docker driver", env: map[string]string{envCellBin: nope, envDockerNetwork: "atende"},
			errs: []string{envDockerNetwork}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(nil, func(k string) string { return tc.env[k] })
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			for _, want := range tc.errs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v does not mention %s", err, want)
				}
			}
		})
	}
}
