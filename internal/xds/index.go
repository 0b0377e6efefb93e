package xds

import (
	"slices"
	"sort"
	"strings"
	"sync"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/destrule"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/sidecarscope"
)

// Index is what every proxy's view is built from, prepared once per change
// of the inputs instead of once per proxy: the policies grouped by
// namespace, each hashed and encoded once, the services (which every proxy
// receives) and the mesh settings, hashed and encoded once. Building one
// proxy's view from it reads only its namespace's and the root namespace's
// policies and combines hashes already computed, and the encoded resources
// it returns are shared by every proxy that has them. NewIndex reuses
// what an earlier Index already hashed and encoded when it is unchanged.
//
// Index.Build returns what Build returns, version included; an Index is
// immutable and safe for concurrent use.
type Index struct {
	snap     *config.Snapshot
	mesh     Mesh
	meshSum  sum
	meshRes  Resource
	services []registry.Service
	// serviceRes are the services encoded, sorted by name; svcSum hashes
	// their content.
	serviceRes []Resource
	svcSum     sum
	svcSums    map[sum]Resource // encoded services by content hash, for the next Index
	byNS       map[string]*namespacePolicies
	// drs are every DestinationRule, in snapshot order: a proxy gets
	// those visible to it (destrule.Visible), which exportTo may make any
	// namespace's.
	drs []entry
	// vss are the VirtualServices bound to sidecars, in snapshot order;
	// each proxy gets those exported to its namespace. vsSum hashes them
	// all: it changes iff one does.
	vss   []entry
	vsSum sum
	// gws are every Gateway, in snapshot order; gwSum hashes them: a
	// change of one wakes every proxy (they are rare).
	gws   []entry
	gwSum sum
	// sidecars are the Sidecar resources, in snapshot order, and scSum
	// hashes them: a change of one wakes every proxy (they are rare).
	// svcSumList holds each service's hash, aligned with services.
	// scoped caches, per Sidecar and proxy namespace, what it leaves a
	// proxy of the services and mesh settings (*scopedPart).
	sidecars   []config.Resource
	scSum      sum
	svcSumList []sum
	scoped     sync.Map
	// creds are the gateway credentials by NAMESPACE/NAME; credNS hashes
	// them per namespace, so that a rotated Secret wakes only the
	// proxies of its namespace.
	creds  map[string]credentialEntry
	credNS map[string]sum
}

// scopedPart is what a Sidecar makes of the shared parts of a view for
// the proxies of one namespace: the services they see, encoded, and the
// mesh settings with the Sidecar's outboundTrafficPolicy.
type scopedPart struct {
	services   []registry.Service
	serviceRes []Resource
	svcSum     sum
	mesh       Mesh
	meshRes    Resource
	meshSum    sum
	err        error
}

type scopeKey struct{ sidecar, ns string }

// namespacePolicies are the policies of one namespace, in snapshot order.
type namespacePolicies struct {
	lists [len(policyKinds)][]entry // PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry
	sum   sum                       // hash of every entry's hash: changes iff a policy here does
}

// entry is one policy with its content hash and its encoding.
type entry struct {
	r   config.Resource
	sum sum
	enc Resource
}

// policyKinds are the kinds of a View's policy lists, in View order.
var policyKinds = [...]config.Kind{config.KindPeerAuthentication, config.KindAuthorizationPolicy, config.KindRequestAuthentication, config.KindTelemetry}

// policyTypes are the type URLs of policyKinds.
var policyTypes = [len(policyKinds)]string{TypePeerAuthentication, TypeAuthorizationPolicy, TypeRequestAuthentication, TypeTelemetry}

// NewIndex prepares the views of snap, services and mesh. prev (nil for
// none) is the Index of the previous inputs: the parts unchanged since are
// taken from it rather than hashed and encoded again. A resource that
// cannot be encoded fails the whole Index, so that the caller keeps the
// last good one rather than pushing views with a part missing.
func NewIndex(snap *config.Snapshot, services []registry.Service, mesh Mesh, prev *Index) (*Index, error) {
	return NewIndexWithCredentials(snap, services, mesh, nil, prev)
}

// NewIndexWithCredentials is NewIndex with the gateway credentials that
// the cluster holds for the gateways (see GatewayCredentials): each
// gateway proxy's view takes those its Gateways name in its namespace.
func NewIndexWithCredentials(snap *config.Snapshot, services []registry.Service, mesh Mesh, creds []Credential, prev *Index) (*Index, error) {
	// Every endpoint carries the mTLS mode its proxy enforces (automatic
	// mTLS): the same for every proxy, so worked out once per change.
	services = withServerModes(snap.List(config.KindPeerAuthentication), services, mesh.RootNamespace)
	ix := &Index{snap: snap, mesh: mesh, services: services, meshSum: meshSum(mesh)}
	if prev != nil && prev.meshSum == ix.meshSum {
		ix.meshRes = prev.meshRes
	} else {
		r, err := encodeMesh(mesh)
		if err != nil {
			return nil, err
		}
		ix.meshRes = r
	}

	if prev != nil && prev.snap == snap {
		ix.byNS, ix.drs, ix.vss, ix.vsSum, ix.gws, ix.gwSum = prev.byNS, prev.drs, prev.vss, prev.vsSum, prev.gws, prev.gwSum
	} else if err := ix.indexPolicies(prev); err != nil {
		return nil, err
	}

	if err := ix.indexCredentials(creds, prev); err != nil {
		return nil, err
	}
	sums := serviceSums(services)
	ix.svcSum = servicesSum(sums)
	ix.svcSumList = sums
	ix.sidecars = snap.List(config.KindSidecar)
	var scSums []sum
	for _, r := range ix.sidecars {
		scSums = append(scSums, resourceSum(r))
	}
	ix.scSum = servicesSum(scSums)
	ix.svcSums = make(map[sum]Resource, len(services))
	ix.serviceRes = make([]Resource, 0, len(services))
	for i, svc := range services {
		r, ok := Resource{}, false
		if prev != nil {
			r, ok = prev.svcSums[sums[i]]
		}
		if !ok {
			var err error
			if r, err = encodeServiceResource(svc); err != nil {
				return nil, err
			}
		}
		ix.svcSums[sums[i]] = r
		ix.serviceRes = append(ix.serviceRes, r)
	}
	sortResources(ix.serviceRes)
	return ix, nil
}

// CredentialsWanted returns the credentials that gateway proxy p would
// be sent if the cluster holds them (GatewayCredentials of the Gateways
// that select it); none for a sidecar.
func (ix *Index) CredentialsWanted(p Proxy) []CredentialRef {
	if !p.Gateway {
		return nil
	}
	var gws, drs []config.Resource
	for _, e := range ix.gws {
		if selectsGateway(e.r, p.Labels) {
			gws = append(gws, e.r)
		}
	}
	for _, e := range ix.drs {
		if destrule.Visible(e.r, p.Namespace) {
			drs = append(drs, e.r)
		}
	}
	return GatewayCredentials(p.Namespace, gws, drs)
}

// indexCredentials hashes and encodes creds, reusing prev's encodings.
func (ix *Index) indexCredentials(creds []Credential, prev *Index) error {
	ix.creds = make(map[string]credentialEntry, len(creds))
	ix.credNS = map[string]sum{}
	byNS := map[string][]sum{}
	for _, c := range creds {
		e := credentialEntry{c: c, sum: credentialSum(c)}
		if o, ok := prev.credential(c.Key()); ok && o.sum == e.sum {
			e.enc = o.enc
		} else {
			var err error
			if e.enc, err = encodeCredential(c); err != nil {
				return err
			}
		}
		ix.creds[c.Key()] = e
		byNS[c.Namespace] = append(byNS[c.Namespace], e.sum)
	}
	for ns, sums := range byNS {
		sort.Slice(sums, func(i, j int) bool { return string(sums[i][:]) < string(sums[j][:]) })
		ix.credNS[ns] = servicesSum(sums)
	}
	return nil
}

// credential returns the entry of credential key in ix (nil: none).
func (ix *Index) credential(key string) (credentialEntry, bool) {
	if ix == nil {
		return credentialEntry{}, false
	}
	e, ok := ix.creds[key]
	return e, ok
}

// indexPolicies groups the snapshot's policies by namespace, hashing each
// and encoding it unless prev holds the same content.
func (ix *Index) indexPolicies(prev *Index) error {
	var old map[sum]Resource
	if prev != nil {
		old = map[sum]Resource{}
		for _, np := range prev.byNS {
			for _, list := range np.lists {
				for _, e := range list {
					old[e.sum] = e.enc
				}
			}
		}
		for _, e := range prev.drs {
			old[e.sum] = e.enc
		}
		for _, e := range prev.vss {
			old[e.sum] = e.enc
		}
		for _, e := range prev.gws {
			old[e.sum] = e.enc
		}
	}
	encoded := func(r config.Resource) (entry, error) {
		e := entry{r: r, sum: resourceSum(r)}
		enc, ok := old[e.sum]
		if !ok {
			var err error
			if enc, err = encodePolicy(r); err != nil {
				return e, err
			}
		}
		e.enc = enc
		return e, nil
	}
	ix.drs = nil
	for _, r := range ix.snap.List(config.KindDestinationRule) {
		e, err := encoded(r)
		if err != nil {
			return err
		}
		ix.drs = append(ix.drs, e)
	}
	ix.vss = nil
	var vsSums []sum
	for _, r := range ix.snap.List(config.KindVirtualService) {
		if !exportedAnywhere(r) {
			continue
		}
		e, err := encoded(r)
		if err != nil {
			return err
		}
		ix.vss = append(ix.vss, e)
		vsSums = append(vsSums, e.sum)
	}
	ix.vsSum = servicesSum(vsSums)
	ix.gws = nil
	var gwSums []sum
	for _, r := range ix.snap.List(config.KindGateway) {
		e, err := encoded(r)
		if err != nil {
			return err
		}
		ix.gws = append(ix.gws, e)
		gwSums = append(gwSums, e.sum)
	}
	ix.gwSum = servicesSum(gwSums)
	ix.byNS = map[string]*namespacePolicies{}
	for k, kind := range policyKinds {
		for _, r := range ix.snap.List(kind) {
			e, err := encoded(r)
			if err != nil {
				return err
			}
			np := ix.byNS[r.Namespace]
			if np == nil {
				np = &namespacePolicies{}
				ix.byNS[r.Namespace] = np
			}
			np.lists[k] = append(np.lists[k], e)
		}
	}
	for _, np := range ix.byNS {
		var all []sum
		for _, list := range np.lists {
			all = append(all, sum{})
			for _, e := range list {
				all = append(all, e.sum)
			}
		}
		np.sum = servicesSum(all)
	}
	return nil
}

// Build returns the View of proxy p and its resources by type URL (every
// type URL of TypeURLs present, each sorted by name), exactly as Build and
// Encode would. Both are shared: do not modify them.
func (ix *Index) Build(p Proxy) (*View, map[string][]Resource) {
	v := &View{Mesh: ix.mesh, Services: ix.services}
	enc := map[string][]Resource{TypeMeshConfig: {ix.meshRes}, TypeServiceEntry: ix.serviceRes}
	// The snapshot lists policies by namespace then name: the root
	// namespace's and the proxy's come in that order.
	nss := []string{p.Namespace}
	if root := ix.mesh.RootNamespace; root != "" && root != p.Namespace {
		nss = []string{min(root, p.Namespace), max(root, p.Namespace)}
	}
	var scopes []*namespacePolicies
	for _, ns := range nss {
		if np := ix.byNS[ns]; np != nil {
			scopes = append(scopes, np)
		}
	}
	var sums [numLists][]sum
	for k := range policyKinds {
		var rs []config.Resource
		var es []Resource
		for _, np := range scopes {
			for _, e := range np.lists[k] {
				// PeerAuthentications go whole: the proxy resolves their
				// selectors, since levels combine.
				if k != 0 && !selects(e.r.Spec, p.Labels) {
					continue
				}
				rs = append(rs, e.r)
				es = append(es, e.enc)
				sums[k] = append(sums[k], e.sum)
			}
		}
		sortResources(es)
		enc[policyTypes[k]] = es
		switch k {
		case 0:
			v.PeerAuthentications = rs
		case 1:
			v.AuthorizationPolicies = rs
		case 2:
			v.RequestAuthentications = rs
		case 3:
			v.Telemetries = rs
		}
	}
	var drs []Resource
	for _, e := range ix.drs {
		if destrule.Visible(e.r, p.Namespace) {
			v.DestinationRules = append(v.DestinationRules, e.r)
			drs = append(drs, e.enc)
			sums[len(policyKinds)] = append(sums[len(policyKinds)], e.sum)
		}
	}
	sortResources(drs)
	enc[TypeDestinationRule] = drs
	var vsSums, gwSums []sum
	var vsEnc, gwEnc []Resource
	if p.Gateway {
		for _, e := range ix.gws {
			if selectsGateway(e.r, p.Labels) {
				v.Gateways = append(v.Gateways, e.r)
				gwEnc = append(gwEnc, e.enc)
				gwSums = append(gwSums, e.sum)
			}
		}
	}
	for _, e := range ix.vss {
		if p.Gateway && gatewayVirtualServiceFor(e.r, v.Gateways) || !p.Gateway && virtualServiceFor(e.r, p.Namespace) {
			v.VirtualServices = append(v.VirtualServices, e.r)
			vsEnc = append(vsEnc, e.enc)
			vsSums = append(vsSums, e.sum)
		}
	}
	sortResources(vsEnc)
	enc[TypeVirtualService] = vsEnc
	sortResources(gwEnc)
	enc[TypeGateway] = gwEnc
	var credSums []sum
	var credEnc []Resource
	if p.Gateway {
		for _, e := range credentialsOf(p.Namespace, v.Gateways, v.DestinationRules, ix.creds) {
			v.Credentials = append(v.Credentials, e.c)
			credEnc = append(credEnc, e.enc)
			credSums = append(credSums, e.sum)
		}
	}
	sortResources(credEnc)
	enc[TypeCredential] = credEnc
	meshS, svcS := ix.meshSum, ix.svcSum
	if sc := sidecarscope.Select(ix.sidecars, p.Namespace, p.Labels, ix.mesh.RootNamespace); sc != nil && !p.Gateway {
		part := ix.scopedFor(sc, p.Namespace)
		if part.err == nil {
			v.Mesh, v.Services = part.mesh, part.services
			enc[TypeMeshConfig], enc[TypeServiceEntry] = []Resource{part.meshRes}, part.serviceRes
			meshS, svcS = part.meshSum, part.svcSum
		}
	}
	v.Version = combine(meshS, sums, svcS, vsSums, gwSums, credSums)
	return v, enc
}

// scopedFor returns (computing it once) what the Sidecar scope sc makes
// of the services and mesh settings for proxies of namespace ns. Its
// error is an encoding failure of the mesh settings, which NewIndex has
// already met for the shared ones: it does not happen.
func (ix *Index) scopedFor(sc *sidecarscope.Scope, ns string) *scopedPart {
	key := scopeKey{sc.Key, ns}
	if p, ok := ix.scoped.Load(key); ok {
		return p.(*scopedPart)
	}
	part := &scopedPart{mesh: ix.mesh, meshRes: ix.meshRes, meshSum: ix.meshSum}
	if m := sc.OutboundTrafficPolicy; m != "" && m != ix.mesh.OutboundTrafficPolicy {
		part.mesh.OutboundTrafficPolicy = m
		part.meshSum = meshSum(part.mesh)
		part.meshRes, part.err = encodeMesh(part.mesh)
	}
	var kept []sum
	for i, s := range ix.services {
		if sc.Allows(s.Hostname, s.Namespace, ns) {
			part.services = append(part.services, s)
			part.serviceRes = append(part.serviceRes, ix.svcSums[ix.svcSumList[i]])
			kept = append(kept, ix.svcSumList[i])
		}
	}
	sortResources(part.serviceRes)
	part.svcSum = servicesSum(kept)
	p, _ := ix.scoped.LoadOrStore(key, part)
	return p.(*scopedPart)
}

// Changes reports what differs between the views of ix and of prev (nil:
// everything): whether every view may have changed (mesh settings,
// services, the root namespace's policies, or a DestinationRule exported
// everywhere), and otherwise the namespaces whose policies changed or
// that see a DestinationRule that changed. Proxies elsewhere have the same view
// under both, so a server need not even rebuild theirs.
func (ix *Index) Changes(prev *Index) (all bool, namespaces map[string]bool) {
	if prev == nil || prev.meshSum != ix.meshSum || prev.svcSum != ix.svcSum || prev.mesh.RootNamespace != ix.mesh.RootNamespace || prev.vsSum != ix.vsSum || prev.scSum != ix.scSum || prev.gwSum != ix.gwSum {
		// A VirtualService may be exported to every namespace: a change
		// of one wakes every proxy (they are rare, and small).
		return true, nil
	}
	namespaces = map[string]bool{}
	// A credential goes only to the gateways of its namespace.
	for ns, s := range ix.credNS {
		if prev.credNS[ns] != s {
			namespaces[ns] = true
		}
	}
	for ns := range prev.credNS {
		if _, ok := ix.credNS[ns]; !ok {
			namespaces[ns] = true
		}
	}
	if prev.snap == ix.snap {
		if len(namespaces) == 0 {
			return false, nil
		}
		return false, namespaces
	}
	if destinationRulesChanged(prev.drs, ix.drs, namespaces) {
		return true, nil
	}
	for ns, np := range ix.byNS {
		if o := prev.byNS[ns]; o == nil || o.sum != np.sum {
			namespaces[ns] = true
		}
	}
	for ns := range prev.byNS {
		if ix.byNS[ns] == nil {
			namespaces[ns] = true
		}
	}
	if root := ix.mesh.RootNamespace; root != "" && namespaces[root] {
		return true, nil
	}
	return false, namespaces
}

// destinationRulesChanged adds to namespaces those whose proxies see a
// DestinationRule that was added, changed or removed between old and new
// (its own namespace and those its exportTo names, before and after), and
// reports whether every namespace does (a rule exported to all).
func destinationRulesChanged(old, new []entry, namespaces map[string]bool) (all bool) {
	before := make(map[string]entry, len(old))
	for _, e := range old {
		before[e.r.Key()] = e
	}
	audience := func(e entry) bool {
		namespaces[e.r.Namespace] = true
		exportTo := e.r.Spec.(*networking.DestinationRule).GetExportTo()
		if len(exportTo) == 0 {
			return true
		}
		for _, ns := range exportTo {
			switch ns {
			case config.ExportAll:
				return true
			case config.ExportPrivate:
			default:
				namespaces[ns] = true
			}
		}
		return false
	}
	for _, e := range new {
		o, ok := before[e.r.Key()]
		delete(before, e.r.Key())
		if ok && o.sum == e.sum {
			continue
		}
		if audience(e) || ok && audience(o) {
			return true
		}
	}
	for _, o := range before {
		if audience(o) {
			return true
		}
	}
	return false
}

// exportedAnywhere reports whether the VirtualService r binds to sidecars
// or to a gateway at all (whatever namespace it is exported to).
func exportedAnywhere(r config.Resource) bool {
	vs, ok := r.Spec.(*networking.VirtualService)
	return ok && (config.AppliesToSidecars(vs) || boundToGateway(r))
}

// sortResources sorts by name, as Encode does; policies come in snapshot
// order, which is already that order unless a namespace name holds a
// character below '/'.
func sortResources(rs []Resource) {
	if !slices.IsSortedFunc(rs, byName) {
		slices.SortFunc(rs, byName)
	}
}

func byName(a, b Resource) int { return strings.Compare(a.Name, b.Name) }
