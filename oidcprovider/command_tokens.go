package oidcprovider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func tokensCommand() *cobra.Command {
	cmd := groupCommand("tokens", "Act on the running server's tokens")
	var (
		client, address, configFile, adapter string
		asJSON                               bool
	)
	revoke := subcommand("tokens revoke", "End every token of a client on the running server",
		`Ends every access and refresh token of --client on the running server, through its admin
API (the server holds the store, so the command asks it): the gateway refuses those tokens at once,
and every token of the client issued before the command, even one minted while it runs. When a
secret leaks, change the secret in the config and reload first, then revoke.

The admin address is found as 'caddy reload' finds it: --address, else the admin address of
--config, else Caddy's default (localhost:2019).

Example:
  caddy oidc tokens revoke --client uptime-kuma-monitor --config /etc/caddy/Caddyfile`,
		func(cmd *cobra.Command, _ []string) error {
			if client == "" {
				return usagef("--client is required")
			}
			var res revokeRequest
			if err := adminCall(address, configFile, adapter, "/oidc/tokens/revoke", map[string]string{"client_id": client}, &res); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked %d token(s) of client %s\n", res.Revoked, res.ClientID)
			return nil
		})
	f := revoke.Flags()
	f.StringVar(&client, "client", "", "the client id whose tokens end (required)")
	adminFlags(revoke, &address, &configFile, &adapter, &asJSON)
	cmd.AddCommand(revoke)
	return cmd
}

// groupCommand is a `caddy oidc` command that only holds subcommands: without one, or with an
// unknown one, it prints its usage and exits with the usage status.
func groupCommand(name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name,
		Short: short,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				fmt.Fprintf(c.ErrOrStderr(), "caddy oidc %s: unknown command %q\n\n%s", name, args[0], c.UsageString())
				os.Exit(exitUsage)
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error {
			_ = c.Help()
			os.Exit(exitUsage)
			return nil
		},
	}
}

// adminCall posts body as JSON to path on the running server's admin API (found as 'caddy
// reload' finds it: address, else the admin address of configFile, else Caddy's default) and
// decodes the answer into out.
func adminCall(address, configFile, adapter, path string, body, out any) error {
	adminAddr, err := caddycmd.DetermineAdminAPIAddress(address, nil, configFile, adapter)
	if err != nil {
		return fmt.Errorf("finding the admin API: %w", err)
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := caddycmd.AdminAPIRequest(adminAddr, http.MethodPost, path, nil, bytes.NewReader(payload))
	if err != nil {
		// an answer of 400 or more comes back as an error that quotes the JSON body: print its message
		var apiErr struct {
			Error string `json:"error"`
		}
		if m := adminRefusal.FindStringSubmatch(err.Error()); m != nil && json.Unmarshal([]byte(m[2]), &apiErr) == nil && apiErr.Error != "" {
			return fmt.Errorf("the running server at %s answered %s: %s", adminAddr, m[1], apiErr.Error)
		}
		return fmt.Errorf("asking the running server at %s: %w", adminAddr, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		var apiErr struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &apiErr) == nil && apiErr.Error != "" {
			return fmt.Errorf("the running server answered %d: %s", resp.StatusCode, apiErr.Error)
		}
		return fmt.Errorf("the running server answered %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer from the admin API: %s", bytes.TrimSpace(data))
	}
	return nil
}

// adminRefusal matches the error caddycmd.AdminAPIRequest makes of an answer of 400 or more:
// its status and body.
var adminRefusal = regexp.MustCompile(`(?s)^caddy responded with error: HTTP (\d+): (.*)$`)

// adminFlags adds the flags of a command that asks the running server: where its admin API is,
// and --json.
func adminFlags(cmd *cobra.Command, address, configFile, adapter *string, asJSON *bool) {
	f := cmd.Flags()
	f.StringVar(address, "address", "", "the admin API's address")
	f.StringVarP(configFile, "config", "c", "", "the config file, to read its admin address")
	f.StringVarP(adapter, "adapter", "a", "", "the config adapter")
	f.BoolVar(asJSON, jsonFlag, false, jsonFlagDoc)
}
