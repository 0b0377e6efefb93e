package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/zmesh/zmesh/internal/echo"
)

func echoCmd() *cobra.Command {
	var cfg echo.Config
	cmd := &cobra.Command{
		Use:   "echo",
		Short: "Run the demo app: echoes requests, calls other services through HTTP_PROXY",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = newLogger(slog.LevelInfo)
			s, err := echo.New(cfg)
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "address to serve on")
	cmd.Flags().StringVar(&cfg.Name, "name", "echo", "name reported in every echo answer")
	return cmd
}
