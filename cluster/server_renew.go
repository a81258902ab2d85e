package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gantry-dev/gantry/pki"
)

// renewEvery is how often a server looks at its certificate's age.
const renewEvery = 12 * time.Hour

// renewServerCert gives a server a new certificate when its current one
// has less than a third of its lifetime left, or has expired (a server
// that was off for months): servers hold the CA key, so they sign their
// own, with a new key, and present it on new connections at once.
func renewServerCert(dataDir string, id *nodeIdentity, ca *pki.CA, now time.Time, log *slog.Logger) error {
	cur := id.cert.Cert
	if !pki.NeedsRenewal(cur, now) && pki.CheckValidity(cur, now) == nil {
		return nil
	}
	keyPEM, csr, err := pki.NewKeyAndCSR(id.cert.Name)
	if err != nil {
		return err
	}
	certPEM, err := ca.Issue(csr, pki.RoleServer, id.cert.Name, cur.IPAddresses, pki.DefaultNodeTTL, now)
	if err != nil {
		return fmt.Errorf("renew this server's certificate: %w", err)
	}
	dir := tlsDir(dataDir)
	if err := pki.WriteNodeFiles(dir, certPEM, keyPEM, id.cert.CAPEM); err != nil {
		return fmt.Errorf("renew this server's certificate: %w", err)
	}
	nc, err := id.reloader.Reload(dir)
	if err != nil {
		return fmt.Errorf("renew this server's certificate: %w", err)
	}
	id.cert = nc
	log.Info("renewed this server's certificate", "old_not_after", cur.NotAfter.UTC(), "not_after", nc.Cert.NotAfter.UTC())
	return nil
}

// renewLoop renews the server's certificate when it gets old.
func renewLoop(ctx context.Context, dataDir string, id *nodeIdentity, ca *pki.CA, log *slog.Logger) error {
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := renewServerCert(dataDir, id, ca, time.Now(), log); err != nil {
			log.Error("certificate renewal failed; retrying later", "err", err)
		}
	}
}
