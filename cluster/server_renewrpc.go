package cluster

// Worker certificate renewal: a worker whose certificate has less than a
// third of its life left sends a new key's CSR to a server (POST /v1/renew
// on the RPC port, authenticated by the certificate being renewed); the
// server signs a certificate with the same identity (pki.Reissue).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/pki"
)

const renewPath = "/v1/renew"

type renewRequest struct {
	CSR []byte `json:"csr"`
}

type renewResponse struct {
	Cert []byte `json:"cert"` // PEM
}

// renewHandler signs renewals for the node presenting the certificate.
func (s *serverNode) renewHandler(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "a node certificate is required", http.StatusUnauthorized)
		return
	}
	if _, _, err := pki.PeerRole(r.TLS); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var req renewRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || len(req.CSR) == 0 {
		http.Error(w, "want {\"csr\": DER}", http.StatusBadRequest)
		return
	}
	cur := r.TLS.PeerCertificates[0]
	cert, err := s.ca.Reissue(req.CSR, cur, pki.DefaultNodeTTL, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	s.log.Info("renewed a node certificate", "name", cur.Subject.CommonName, "old_not_after", cur.NotAfter.UTC())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(renewResponse{Cert: cert})
}

// renewWorkerCert renews a worker's certificate through a server when it
// is old; the new one is written to the data dir and presented at once.
func renewWorkerCert(ctx context.Context, dataDir string, id *nodeIdentity, servers []string, now time.Time, log *slog.Logger) error {
	if !pki.NeedsRenewal(id.cert.Cert, now) {
		return nil
	}
	keyPEM, csr, err := pki.NewKeyAndCSR(id.cert.Name)
	if err != nil {
		return err
	}
	body, err := json.Marshal(renewRequest{CSR: csr})
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: id.reloader.ClientTLS(id.cert.CAPEM, pki.RoleServer), DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}
	defer hc.CloseIdleConnections()
	var errs []string
	for _, addr := range servers {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+renewPath, bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Sprintf("%s: %s %s", addr, resp.Status, strings.TrimSpace(string(data))))
			continue
		}
		var out renewResponse
		if err := json.Unmarshal(data, &out); err != nil {
			return fmt.Errorf("renew through %s: %w", addr, err)
		}
		dir := tlsDir(dataDir)
		if err := pki.WriteNodeFiles(dir, out.Cert, keyPEM, id.cert.CAPEM); err != nil {
			return err
		}
		nc, err := id.reloader.Reload(dir)
		if err != nil {
			return err
		}
		old := id.cert.Cert.NotAfter
		id.cert = nc
		log.Info("renewed this worker's certificate", "through", addr, "old_not_after", old.UTC(), "not_after", nc.Cert.NotAfter.UTC())
		return nil
	}
	return fmt.Errorf("renew this worker's certificate: no server signed it: %s", strings.Join(errs, "; "))
}

// workerRenewLoop renews the worker's certificate when it gets old.
func workerRenewLoop(ctx context.Context, dataDir string, id *nodeIdentity, servers func() []string, log *slog.Logger) error {
	t := time.NewTicker(renewEvery / 12) // hourly: a failed try is retried soon
	defer t.Stop()
	for {
		if err := renewWorkerCert(ctx, dataDir, id, servers(), time.Now(), log); err != nil && ctx.Err() == nil {
			log.Error("certificate renewal failed; retrying in an hour", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
