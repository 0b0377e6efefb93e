package kubesource

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/zmesh/zmesh/internal/config"
)

// listPage is the page size of Load's lists.
const listPage = 500

// Load lists the cluster's Istio resources once, through the same
// conversion the watching Source uses, for commands such as `zmesh check`
// that do not watch. It returns the snapshot of the accepted resources,
// the objects it rejected (each left out alone, as the control plane
// would), and the warnings of accepted ones. An error means the cluster
// could not be read.
func Load(ctx context.Context, rc *rest.Config) (*config.Snapshot, []Rejection, []config.Warning, error) {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("kubesource: %w", err)
	}
	var (
		all      []config.Resource
		rejected []Rejection
		warnings []config.Warning
	)
	for _, k := range istioKinds {
		opts := metav1.ListOptions{Limit: listPage}
		for {
			list, err := dyn.Resource(k.gvr).List(ctx, opts)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("kubesource: list %s: %w", k.gvr.Resource, err)
			}
			for i := range list.Items {
				u := &list.Items[i]
				o, err := toObject(u)
				var (
					r  config.Resource
					ws []config.Warning
				)
				if err == nil {
					r, ws, err = convert(o, k.kind)
				}
				warnings = append(warnings, ws...)
				if err != nil {
					rejected = append(rejected, Rejection{Kind: k.kind, Namespace: u.GetNamespace(), Name: u.GetName(), Err: err,
						uid: string(u.GetUID()), version: u.GetResourceVersion()})
					continue
				}
				all = append(all, r)
			}
			if opts.Continue = list.GetContinue(); opts.Continue == "" {
				break
			}
		}
	}
	sortRejections(rejected)
	return config.NewSnapshot(config.Version(all), all), rejected, warnings, nil
}
