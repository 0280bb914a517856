package k8s

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/allegro-mesh/allegro/committee"
	"github.com/allegro-mesh/allegro/deploy/testnet"
	"github.com/allegro-mesh/allegro/sidecar"
)

// objects are the decoded documents of testnet.yaml, by kind.
type objects struct {
	namespaces   []*corev1.Namespace
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	services     map[string]*corev1.Service
	statefulSets map[string]*appsv1.StatefulSet
	deployments  map[string]*appsv1.Deployment
	pdbs         []*policyv1.PodDisruptionBudget
	count        int
}

// decodeStrict decodes every document of a multi-document YAML file into
// its Kubernetes API type, refusing unknown fields, duplicate keys, wrong
// types and unknown kinds.
func decodeStrict(raw []byte) (*objects, error) {
	objs := &objects{services: map[string]*corev1.Service{}, statefulSets: map[string]*appsv1.StatefulSet{}, deployments: map[string]*appsv1.Deployment{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for i := 0; ; i++ {
		if i > 10_000 {
			return nil, errors.New("too many documents")
		}
		doc, err := r.Read()
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
			return nil, err
		}
		var target any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/Namespace":
			o := &corev1.Namespace{}
			objs.namespaces, target = append(objs.namespaces, o), o
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			objs.configMaps, target = append(objs.configMaps, o), o
		case "v1/Secret":
			o := &corev1.Secret{}
			objs.secrets, target = append(objs.secrets, o), o
		case "v1/Service":
			target = &corev1.Service{}
		case "apps/v1/StatefulSet":
			target = &appsv1.StatefulSet{}
		case "apps/v1/Deployment":
			target = &appsv1.Deployment{}
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			objs.pdbs, target = append(objs.pdbs, o), o
		default:
			return nil, errors.New("unexpected kind " + tm.APIVersion + " " + tm.Kind)
		}
		if err := sigsyaml.UnmarshalStrict(doc, target); err != nil {
			return nil, errors.New(tm.Kind + ": " + err.Error())
		}
		switch o := target.(type) {
		case *corev1.Service:
			objs.services[o.Name] = o
		case *appsv1.StatefulSet:
			objs.statefulSets[o.Name] = o
		case *appsv1.Deployment:
			objs.deployments[o.Name] = o
		}
		objs.count++
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(append(out, line...), '\n')
		}
	}
	return out
}

// composeFile is the part of the compose file the cross-checks read.
type composeFile struct {
	Services map[string]struct {
		Entrypoint  []string          `yaml:"entrypoint"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// compose generates the compose testnet of the same testnet.Config, to
// hold the manifests to what it runs.
func compose(t *testing.T, cfg testnet.Config) (*composeFile, *committee.File) {
	t.Helper()
	dir := t.TempDir()
	if _, err := testnet.Generate(cfg, dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, testnet.ComposeFile))
	if err != nil {
		t.Fatal(err)
	}
	var doc composeFile
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	f, err := committee.LoadFile(filepath.Join(dir, testnet.CommitteeFile))
	if err != nil {
		t.Fatal(err)
	}
	return &doc, f
}

func TestGenerate(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		n, quorum, lightClients int
		namespace, domain       string
		storageClass            string
	}{
		{name: "default", n: 4, quorum: 3, lightClients: 1},
		{name: "seven", n: 7, quorum: 5, lightClients: 2, namespace: "allegro-ci", domain: "k8s.example.internal", storageClass: "fast-ssd"},
		{name: "one", n: 1, quorum: 1, lightClients: 0},
		{name: "ten", n: 10, quorum: 7, lightClients: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Testnet.Validators, cfg.Testnet.LightClients = tc.n, tc.lightClients
			cfg.Testnet.Project = "allegro-k8s"
			if tc.namespace != "" {
				cfg.Namespace, cfg.ClusterDomain = tc.namespace, tc.domain
			}
			cfg.StorageClass = tc.storageClass
			dir := t.TempDir()
			n, err := Generate(cfg, dir)
			if err != nil {
				t.Fatal(err)
			}
			if n.Quorum != tc.quorum || n.F != tc.n-tc.quorum || len(n.Sidecars) != tc.n || len(n.LightClients) != tc.lightClients {
				t.Fatalf("network quorum %d f %d sidecars %d light clients %d", n.Quorum, n.F, len(n.Sidecars), len(n.LightClients))
			}
			raw, err := os.ReadFile(filepath.Join(dir, ManifestsFile))
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeStrict(raw)
			if err != nil {
				t.Fatalf("%s does not decode strictly: %v", ManifestsFile, err)
			}
			checkManifests(t, cfg, n, dir, objs)
			checkKustomization(t, dir)
		})
	}
}

func checkManifests(t *testing.T, cfg Config, n *Network, dir string, objs *objects) {
	wantPDB := 0
	if n.F > 0 {
		wantPDB = 1
	}
	if len(objs.namespaces) != 1 || len(objs.configMaps) != 1 || len(objs.secrets) != 1 || len(objs.services) != 3 ||
		len(objs.statefulSets) != 2 || len(objs.deployments) != cfg.Testnet.LightClients || len(objs.pdbs) != wantPDB {
		t.Fatalf("objects: %d namespaces, %d config maps, %d secrets, %d services, %d stateful sets, %d deployments, %d PDBs",
			len(objs.namespaces), len(objs.configMaps), len(objs.secrets), len(objs.services), len(objs.statefulSets), len(objs.deployments), len(objs.pdbs))
	}
	if objs.namespaces[0].Name != cfg.Namespace {
		t.Errorf("namespace %q, want %q", objs.namespaces[0].Name, cfg.Namespace)
	}
	metas := []metav1.ObjectMeta{objs.configMaps[0].ObjectMeta, objs.secrets[0].ObjectMeta}
	for _, s := range objs.services {
		metas = append(metas, s.ObjectMeta)
	}
	for _, s := range objs.statefulSets {
		metas = append(metas, s.ObjectMeta)
	}
	for _, d := range objs.deployments {
		metas = append(metas, d.ObjectMeta)
	}
	for _, p := range objs.pdbs {
		metas = append(metas, p.ObjectMeta)
	}
	for _, m := range metas {
		if m.Namespace != cfg.Namespace || len(validation.IsDNS1123Label(m.Name)) > 0 || m.Labels[labelInstance] != cfg.Testnet.Project {
			t.Errorf("object %q: namespace %q, labels %v", m.Name, m.Namespace, m.Labels)
		}
	}

	composeDoc, composeCommittee := compose(t, cfg.Testnet)
	cm := objs.configMaps[0]
	onDisk, err := os.ReadFile(filepath.Join(dir, CommitteeFile))
	if err != nil || cm.Data[committeeKey] != string(onDisk) {
		t.Fatalf("ConfigMap %s differs from %s (%v)", cm.Name, CommitteeFile, err)
	}
	f, err := committee.LoadFile(filepath.Join(dir, CommitteeFile))
	if err != nil {
		t.Fatal(err)
	}
	// The same network parameters as the compose committee; only the
	// members' keys and addresses differ.
	g := *composeCommittee
	g.Members = f.Members
	if !committeeEqual(f, &g) || len(composeCommittee.Members) != len(f.Members) {
		t.Errorf("committee %+v, compose's %+v", f, composeCommittee)
	}
	c, err := f.Committee()
	if err != nil || c.N() != n.Validators || c.Quorum() != n.Quorum {
		t.Fatalf("committee n %d quorum %d: %v", c.N(), c.Quorum(), err)
	}

	chainSet := objs.statefulSets[cfg.chainName()]
	chainSvc := objs.services[cfg.chainName()]
	if chainSet == nil || chainSvc == nil {
		t.Fatalf("no dev chain StatefulSet or Service %q", cfg.chainName())
	}
	checkChain(t, cfg, chainSet, chainSvc, composeDoc)

	set := objs.statefulSets[cfg.sidecarSet()]
	if set == nil {
		t.Fatalf("no sidecar StatefulSet %q", cfg.sidecarSet())
	}
	checkSidecarSet(t, cfg, n, set, objs)
	checkPods(t, cfg, n, f, set, objs, composeDoc, composeCommittee)

	for _, p := range objs.pdbs {
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != n.F || !selects(p.Spec.Selector, set.Spec.Template.Labels) {
			t.Errorf("PDB %s: maxUnavailable %v, selector %v; want f = %d of the sidecars", p.Name, p.Spec.MaxUnavailable, p.Spec.Selector, n.F)
		}
	}

	for j := 1; j <= cfg.Testnet.LightClients; j++ {
		d := objs.deployments[cfg.lightClient(j)]
		if d == nil || *d.Spec.Replicas != 1 || !selects(d.Spec.Selector, d.Spec.Template.Labels) {
			t.Fatalf("light client %d: %+v", j, d)
		}
		for k := 1; k <= cfg.Testnet.LightClients; k++ {
			if k != j && selects(d.Spec.Selector, objs.deployments[cfg.lightClient(k)].Spec.Template.Labels) {
				t.Errorf("light client %d's selector takes light client %d's pods", j, k)
			}
		}
		pod := d.Spec.Template.Spec
		lc := pod.Containers[0]
		want := composeDoc.Services["lc"+strconv.Itoa(j)]
		if lc.Command != nil || !slices.Equal(lc.Args, want.Command) || lc.Image != cfg.Testnet.Image {
			t.Errorf("light client %d runs %v %v, compose %v", j, lc.Command, lc.Args, want.Command)
		}
		fs := newPodFS(t, "lc", "", pod, objs)
		if got, err := committee.LoadFile(fs.resolve(t, lc, flagValue(lc.Args, "--committee"))); err != nil || len(got.Members) != n.Validators {
			t.Errorf("light client %d's --committee: %v", j, err)
		}
	}
}

func committeeEqual(a, b *committee.File) bool {
	var x, y bytes.Buffer
	if err := sigsyamlEncode(&x, a); err != nil {
		return false
	}
	if err := sigsyamlEncode(&y, b); err != nil {
		return false
	}
	return x.String() == y.String()
}

func sigsyamlEncode(w io.Writer, v any) error {
	b, err := sigsyaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func checkChain(t *testing.T, cfg Config, set *appsv1.StatefulSet, svc *corev1.Service, composeDoc *composeFile) {
	want := composeDoc.Services["devchain"]
	if *set.Spec.Replicas != 1 || len(set.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("dev chain: %d replicas, %d containers", *set.Spec.Replicas, len(set.Spec.Template.Spec.Containers))
	}
	ctr := set.Spec.Template.Spec.Containers[0]
	if !slices.Equal(ctr.Command, want.Entrypoint) || !slices.Equal(ctr.Args, want.Command) {
		t.Errorf("dev chain runs %v %v, compose %v %v", ctr.Command, ctr.Args, want.Entrypoint, want.Command)
	}
	if ctr.ReadinessProbe == nil || ctr.ReadinessProbe.Exec == nil || !slices.Equal(ctr.ReadinessProbe.Exec.Command, want.Healthcheck.Test[1:]) {
		t.Errorf("dev chain readiness %+v, compose health check %v", ctr.ReadinessProbe, want.Healthcheck.Test)
	}
	if !selects(set.Spec.Selector, set.Spec.Template.Labels) || !selectsMap(svc.Spec.Selector, set.Spec.Template.Labels) {
		t.Errorf("dev chain selectors do not take its pod")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != chainPort || containerPort(t, ctr, svc.Spec.Ports[0].TargetPort.String(), corev1.ProtocolTCP) != chainPort {
		t.Errorf("dev chain Service ports %+v", svc.Spec.Ports)
	}
	checkClaim(t, cfg, set, cfg.ChainDataSize)
	if len(ctr.VolumeMounts) != 1 || ctr.VolumeMounts[0].Name != set.Spec.VolumeClaimTemplates[0].Name ||
		!strings.HasPrefix(flagValue(ctr.Args, "--datadir"), ctr.VolumeMounts[0].MountPath+"/") {
		t.Errorf("dev chain data %v not on its claim: %+v", flagValue(ctr.Args, "--datadir"), ctr.VolumeMounts)
	}
}

func checkClaim(t *testing.T, cfg Config, set *appsv1.StatefulSet, size string) {
	t.Helper()
	if len(set.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%s: %d claim templates", set.Name, len(set.Spec.VolumeClaimTemplates))
	}
	pvc := set.Spec.VolumeClaimTemplates[0]
	got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	if got.String() != size || class != cfg.StorageClass || !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("%s claim: size %s class %q modes %v; want %s %q", set.Name, got.String(), class, pvc.Spec.AccessModes, size, cfg.StorageClass)
	}
}

func checkSidecarSet(t *testing.T, cfg Config, n *Network, set *appsv1.StatefulSet, objs *objects) {
	spec := set.Spec
	if spec.Replicas == nil || int(*spec.Replicas) != n.Validators {
		t.Errorf("sidecar replicas %v, want %d validators", spec.Replicas, n.Validators)
	}
	if spec.Ordinals == nil || spec.Ordinals.Start != 1 {
		t.Errorf("sidecar ordinals %+v: pod <set>-I must run vI", spec.Ordinals)
	}
	// OrderedReady would wait for v1 to be ready before starting v2, but
	// no sidecar is ready before a quorum runs.
	if spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("pod management %q, want Parallel", spec.PodManagementPolicy)
	}
	tmpl := spec.Template
	if !selects(spec.Selector, tmpl.Labels) {
		t.Errorf("StatefulSet selector %v does not take its pods %v", spec.Selector, tmpl.Labels)
	}
	headless := objs.services[spec.ServiceName]
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses ||
		!selectsMap(headless.Spec.Selector, tmpl.Labels) {
		t.Fatalf("governing Service %q must be headless, publish not-ready pods and select the sidecars: %+v", spec.ServiceName, headless)
	}
	api := objs.services[cfg.apiService()]
	if api == nil || api.Spec.ClusterIP == corev1.ClusterIPNone || !selectsMap(api.Spec.Selector, tmpl.Labels) || len(api.Spec.Ports) != 1 {
		t.Fatalf("API Service %+v", api)
	}
	checkClaim(t, cfg, set, cfg.DataSize)

	pod := tmpl.Spec
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 1 {
		t.Fatalf("sidecar pod: %d containers, %d init containers", len(pod.Containers), len(pod.InitContainers))
	}
	// The Secret's key files are for the installer alone: neither group
	// nor others may read them (the installed copy is 0600, see checkPods).
	for _, v := range pod.Volumes {
		if v.Secret == nil {
			continue
		}
		if len(v.Secret.Items) != n.Validators {
			t.Errorf("Secret volume %s: %d items for %d validators", v.Name, len(v.Secret.Items), n.Validators)
		}
		for _, it := range v.Secret.Items {
			mode := v.Secret.DefaultMode
			if it.Mode != nil {
				mode = it.Mode
			}
			if mode == nil || *mode&0o077 != 0 {
				t.Errorf("Secret volume %s item %s: mode %s, want none for group and others", v.Name, it.Key, modeString(mode))
			}
		}
	}
	sc := pod.Containers[0]
	if sc.Image != cfg.Testnet.Image || pod.InitContainers[0].Image != cfg.Testnet.Image || sc.ImagePullPolicy != cfg.ImagePullPolicy {
		t.Errorf("images %q %q policy %q", sc.Image, pod.InitContainers[0].Image, sc.ImagePullPolicy)
	}
	if api.Spec.Ports[0].Port != apiPort || containerPort(t, sc, api.Spec.Ports[0].TargetPort.String(), corev1.ProtocolTCP) != apiPort {
		t.Errorf("API Service port %+v", api.Spec.Ports[0])
	}
	// Probes: readiness on /readyz, liveness (and startup) on /livez, all
	// on the API port the sidecar listens on.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", sc.ReadinessProbe, "/readyz"}, {"liveness", sc.LivenessProbe, "/livez"}, {"startup", sc.StartupProbe, "/livez"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe %+v: want an HTTP GET", p.name, p.probe)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || containerPort(t, sc, p.probe.HTTPGet.Port.String(), corev1.ProtocolTCP) != apiPort ||
			p.probe.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			t.Errorf("%s probe %+v, want GET %s on %d", p.name, p.probe.HTTPGet, p.path, apiPort)
		}
	}
	if env(sc, "ALLEGRO_API_LISTEN") != "0.0.0.0:"+strconv.Itoa(apiPort) {
		t.Errorf("the sidecar listens on %q, the probes ask %d", env(sc, "ALLEGRO_API_LISTEN"), apiPort)
	}
	// The headless Service carries the mesh ports of the container.
	for _, sp := range headless.Spec.Ports {
		if containerPort(t, sc, sp.TargetPort.String(), sp.Protocol) != int(sp.Port) {
			t.Errorf("headless Service port %+v does not match the container's", sp)
		}
	}
}

// checkPods plays each sidecar pod the way the kubelet would set it up:
// its downward-API variables, its volumes (the Secret's and ConfigMap's
// items, a fresh claim), the key installer's command, then the sidecar's
// environment, and holds the result to the committee and the compose file.
func checkPods(t *testing.T, cfg Config, n *Network, f *committee.File, set *appsv1.StatefulSet, objs *objects, composeDoc *composeFile, composeCommittee *committee.File) {
	headless := set.Spec.ServiceName
	pods := map[string]int{}
	for i := 0; i < int(*set.Spec.Replicas); i++ {
		ord := int(set.Spec.Ordinals.Start) + i
		pods[set.Name+"-"+strconv.Itoa(ord)] = ord
	}
	// Every member address is the stable name of the pod that runs that
	// member, under the headless Service, in this namespace and domain.
	for mi, m := range f.Members {
		if len(m.Addrs) != 2 {
			t.Errorf("member %s: addrs %v, want TCP and QUIC", m.Name, m.Addrs)
		}
		for _, s := range m.Addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				t.Fatalf("member %s: %v", m.Name, err)
			}
			host, err := a.ValueForProtocol(ma.P_DNS4)
			if err != nil {
				t.Fatalf("member %s address %s is not a /dns4 name", m.Name, s)
			}
			for _, label := range strings.Split(host, ".") {
				if msgs := validation.IsDNS1123Label(label); len(msgs) > 0 {
					t.Errorf("member %s: %q in %s: %v", m.Name, label, host, msgs)
				}
			}
			pod, rest, _ := strings.Cut(host, ".")
			ord, ok := pods[pod]
			if !ok || rest != headless+"."+cfg.Namespace+".svc."+cfg.ClusterDomain {
				t.Errorf("member %s address %s: no pod %q of %s under %s.%s.svc.%s", m.Name, s, pod, set.Name, headless, cfg.Namespace, cfg.ClusterDomain)
			}
			if m.Name != testnet.ValidatorName(ord) || mi != ord-1 {
				t.Errorf("member %d %s is at pod %s (ordinal %d)", mi, m.Name, pod, ord)
			}
			port, proto := "", corev1.ProtocolTCP
			if port, err = a.ValueForProtocol(ma.P_TCP); err != nil {
				proto = corev1.ProtocolUDP
				port, _ = a.ValueForProtocol(ma.P_UDP)
			}
			if want := strconv.Itoa(cfg.Testnet.P2PPort); port != want || !hasPort(set.Spec.Template.Spec.Containers[0], cfg.Testnet.P2PPort, proto) {
				t.Errorf("member %s address %s: port %s/%s, the sidecar listens on %s", m.Name, s, port, proto, want)
			}
		}
	}

	tmpl := set.Spec.Template.Spec
	for pod, ord := range pods {
		name := testnet.ValidatorName(ord)
		fs := newPodFS(t, pod, strconv.Itoa(ord), tmpl, objs)
		fs.volumes[set.Spec.VolumeClaimTemplates[0].Name] = t.TempDir()

		// The init container: allegro-dev testnet install-keys, as the
		// compose file's keys service runs it.
		ic := tmpl.InitContainers[0]
		icEnv := fs.env(t, ic)
		args := make([]string, len(ic.Args))
		for i, a := range ic.Args {
			args[i] = expand(a, icEnv)
		}
		if !slices.Equal(ic.Command, []string{"/allegro-dev"}) || len(args) != 7 || !slices.Equal(args[:2], []string{"testnet", "install-keys"}) ||
			args[6] != name {
			t.Fatalf("pod %s: init container runs %v %v, want allegro-dev testnet install-keys ... %s", pod, ic.Command, args, name)
		}
		keysDir, into := fs.resolve(t, ic, flagValue(args, "--keys")), fs.resolve(t, ic, flagValue(args, "--into"))
		// Only its own key is visible to the installer.
		if entries, err := os.ReadDir(keysDir); err != nil || len(entries) != 1 || entries[0].Name() != name+".key" {
			t.Errorf("pod %s: the installer sees %v (%v), want only %s.key", pod, entries, err, name)
		}
		if err := testnet.InstallKeys(keysDir, into, []string{name}); err != nil {
			t.Fatalf("pod %s: install-keys: %v", pod, err)
		}

		sc := tmpl.Containers[0]
		scEnv := fs.env(t, sc)
		if !slices.Equal(sc.Args, []string{"sidecar"}) || sc.Command != nil {
			t.Errorf("pod %s runs %v %v", pod, sc.Command, sc.Args)
		}
		keyPath := fs.resolve(t, sc, scEnv["ALLEGRO_KEY_FILE"])
		st, err := os.Stat(keyPath)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("pod %s: key %s: %v %v, want mode 0600", pod, scEnv["ALLEGRO_KEY_FILE"], st, err)
		}
		gotName, key, err := committee.LoadKeyFile(keyPath)
		if err != nil || gotName != name || hex.EncodeToString(key.Public().(ed25519.PublicKey)) != f.Members[ord-1].PublicKey {
			t.Fatalf("pod %s: key %q %v does not match member %s", pod, gotName, err, name)
		}
		if !strings.HasPrefix(keyPath, fs.resolve(t, sc, scEnv["ALLEGRO_DATA_DIR"])+"/") {
			t.Errorf("pod %s: key %s outside the data dir %s", pod, keyPath, scEnv["ALLEGRO_DATA_DIR"])
		}
		if got, err := committee.LoadFile(fs.resolve(t, sc, scEnv["ALLEGRO_COMMITTEE_FILE"])); err != nil || got.Members[ord-1].Name != name {
			t.Errorf("pod %s: committee file: %v", pod, err)
		}

		// ALLEGRO_*: what compose sets for the same validator, but the
		// chain and the sidecar's own addresses are names in the cluster.
		want := composeDoc.Services[name].Environment
		var gotKeys, wantKeys []string
		for k := range scEnv {
			if strings.HasPrefix(k, "ALLEGRO_") {
				gotKeys = append(gotKeys, k)
			}
		}
		for k := range want {
			wantKeys = append(wantKeys, k)
		}
		slices.Sort(gotKeys)
		slices.Sort(wantKeys)
		if !slices.Equal(gotKeys, wantKeys) {
			t.Fatalf("pod %s sets %v, compose sets %v", pod, gotKeys, wantKeys)
		}
		for _, k := range gotKeys {
			got := scEnv[k]
			if strings.Contains(got, "$(") {
				t.Errorf("pod %s: %s = %q has an unresolved reference", pod, k, got)
			}
			switch k {
			case "ALLEGRO_CHAIN_RPC":
				gu, err1 := url.Parse(got)
				wu, err2 := url.Parse(want[k])
				if err1 != nil || err2 != nil || gu.Scheme != wu.Scheme || gu.Port() != wu.Port() || gu.Hostname() != cfg.chainName()+"."+cfg.Namespace+".svc."+cfg.ClusterDomain {
					t.Errorf("pod %s: %s = %q, compose %q", pod, k, got, want[k])
				}
			case "ALLEGRO_P2P_ANNOUNCE":
				// In both, a sidecar announces its own committee entry.
				if !slices.Equal(strings.Split(got, ","), f.Members[ord-1].Addrs) {
					t.Errorf("pod %s announces %q, its entry is %v", pod, got, f.Members[ord-1].Addrs)
				}
				if !slices.Equal(strings.Split(want[k], ","), composeCommittee.Members[ord-1].Addrs) {
					t.Errorf("compose %s announces %q, its entry is %v", name, want[k], composeCommittee.Members[ord-1].Addrs)
				}
			default:
				if got != want[k] {
					t.Errorf("pod %s: %s = %q, compose %q", pod, k, got, want[k])
				}
			}
		}
		if n.Sidecars[ord-1].Pod != pod || n.Sidecars[ord-1].Name != name {
			t.Errorf("Network.Sidecars[%d] = %+v, pod %s", ord-1, n.Sidecars[ord-1], pod)
		}
	}
}

// podFS lays out a pod's volumes in temporary directories and resolves
// paths inside its containers to them, as the kubelet mounts them.
type podFS struct {
	fields  map[string]string // downward API field paths
	volumes map[string]string // volume name -> directory
}

func newPodFS(t *testing.T, pod, index string, spec corev1.PodSpec, objs *objects) *podFS {
	t.Helper()
	fs := &podFS{
		fields:  map[string]string{"metadata.name": pod},
		volumes: map[string]string{},
	}
	if index != "" {
		fs.fields["metadata.labels['"+appsv1.PodIndexLabel+"']"] = index
	}
	for _, v := range spec.Volumes {
		dir := t.TempDir()
		fs.volumes[v.Name] = dir
		var items []corev1.KeyToPath
		var data map[string][]byte
		var defaultMode *int32
		switch {
		case v.Secret != nil:
			var sec *corev1.Secret
			for _, s := range objs.secrets {
				if s.Name == v.Secret.SecretName {
					sec = s
				}
			}
			if sec == nil {
				t.Fatalf("volume %s: no Secret %q", v.Name, v.Secret.SecretName)
			}
			items, data, defaultMode = v.Secret.Items, sec.Data, v.Secret.DefaultMode
		case v.ConfigMap != nil:
			var cm *corev1.ConfigMap
			for _, c := range objs.configMaps {
				if c.Name == v.ConfigMap.Name {
					cm = c
				}
			}
			if cm == nil {
				t.Fatalf("volume %s: no ConfigMap %q", v.Name, v.ConfigMap.Name)
			}
			data = map[string][]byte{}
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
			items, defaultMode = v.ConfigMap.Items, v.ConfigMap.DefaultMode
		default:
			t.Fatalf("volume %s: unexpected source", v.Name)
		}
		for _, it := range items {
			b, ok := data[it.Key]
			if !ok {
				t.Fatalf("volume %s: item %q is not in its source", v.Name, it.Key)
			}
			mode := int32(0o644)
			if defaultMode != nil {
				mode = *defaultMode
			}
			if it.Mode != nil {
				mode = *it.Mode
			}
			p := filepath.Join(dir, it.Path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, os.FileMode(mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return fs
}

// env returns a container's environment, references expanded.
func (fs *podFS) env(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				t.Fatalf("%s: %s: only field references are expected", c.Name, e.Name)
			}
			v, ok := fs.fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("%s: %s: field %q is not set on the pod", c.Name, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			out[e.Name] = v
			continue
		}
		// Only variables defined earlier expand, as in Kubernetes.
		out[e.Name] = expand(e.Value, out)
	}
	return out
}

// resolve maps path inside container c to the file on disk.
func (fs *podFS) resolve(t *testing.T, c corev1.Container, path string) string {
	t.Helper()
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if (path == m.MountPath || strings.HasPrefix(path, m.MountPath+"/")) && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		t.Fatalf("%s: %s is on no volume", c.Name, path)
	}
	root, ok := fs.volumes[best.Name]
	if !ok {
		t.Fatalf("%s: mount %s names no volume of the pod", c.Name, best.Name)
	}
	sub := best.SubPath
	if best.SubPathExpr != "" {
		sub = expand(best.SubPathExpr, fs.env(t, c))
		if strings.Contains(sub, "$(") {
			t.Fatalf("%s: subPathExpr %q does not resolve", c.Name, best.SubPathExpr)
		}
	}
	return filepath.Join(root, sub, strings.TrimPrefix(path, best.MountPath))
}

// expand replaces $(NAME) by vars[NAME], leaving unknown references.
func expand(s string, vars map[string]string) string {
	for name, v := range vars {
		s = strings.ReplaceAll(s, "$("+name+")", v)
	}
	return s
}

func modeString(m *int32) string {
	if m == nil {
		return "unset (0644)"
	}
	return "0" + strconv.FormatInt(int64(*m), 8)
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func flagValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// containerPort resolves a probe's or Service's target port, by name or
// number, on container c.
func containerPort(t *testing.T, c corev1.Container, port string, proto corev1.Protocol) int {
	t.Helper()
	for _, p := range c.Ports {
		if (p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port) && p.Protocol == proto {
			return int(p.ContainerPort)
		}
	}
	t.Errorf("%s has no %s port %q", c.Name, proto, port)
	return -1
}

func hasPort(c corev1.Container, port int, proto corev1.Protocol) bool {
	for _, p := range c.Ports {
		if int(p.ContainerPort) == port && p.Protocol == proto {
			return true
		}
	}
	return false
}

func selects(sel *metav1.LabelSelector, podLabels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(labels.Set(podLabels))
}

func selectsMap(sel, podLabels map[string]string) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(podLabels))
}

// kustomizationFile is what kustomization.yaml may hold.
type kustomizationFile struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

func checkKustomization(t *testing.T, dir string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, KustomizationFile))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomizationFile
	if err := sigsyaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("%s: %v", KustomizationFile, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" || !slices.Equal(k.Resources, []string{ManifestsFile}) {
		t.Fatalf("%s: %+v", KustomizationFile, k)
	}
}

// TestStrictDecodingCatchesMistakes: the decoding the tests rely on fails
// on a misspelled field, a wrong type, a duplicate key and an unknown kind.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(DefaultConfig(), dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, ManifestsFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeStrict(raw); err != nil {
		t.Fatalf("generated manifests: %v", err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"misspelled field", "publishNotReadyAddresses:", "publishNotReadyAddress:"},
		{"field at the wrong level", "  podManagementPolicy: Parallel", "  podManagementPolicy: Parallel\n  subPathExpr: x"},
		{"wrong type", "replicas: 4", "replicas: four"},
		{"duplicate key", "  serviceName: allegro-e2e-testnet-mesh", "  serviceName: allegro-e2e-testnet-mesh\n  serviceName: x"},
		{"unknown kind", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgets"},
	} {
		if !bytes.Contains(raw, []byte(tc.old)) {
			t.Fatalf("%s: %q not in the manifests", tc.name, tc.old)
		}
		bad := bytes.Replace(raw, []byte(tc.old), []byte(tc.new), 1)
		if _, err := decodeStrict(bad); err == nil {
			t.Errorf("%s: decoded without error", tc.name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"namespace", func(c *Config) { c.Namespace = "Allegro" }, "Namespace"},
		{"empty namespace", func(c *Config) { c.Namespace = "" }, "Namespace"},
		{"cluster domain", func(c *Config) { c.ClusterDomain = "cluster_local" }, "ClusterDomain"},
		{"storage class", func(c *Config) { c.StorageClass = "Fast SSD" }, "StorageClass"},
		{"data size", func(c *Config) { c.DataSize = "lots" }, "DataSize"},
		{"chain data size", func(c *Config) { c.ChainDataSize = "0" }, "ChainDataSize"},
		{"pull policy", func(c *Config) { c.ImagePullPolicy = "Sometimes" }, "ImagePullPolicy"},
		{"byzantine", func(c *Config) { c.Testnet.Byzantine = map[string]string{"v1": sidecar.ByzantineEquivocate} }, "Byzantine"},
		{"epochs", func(c *Config) { c.Testnet.EpochLength = 12 }, "EpochLength"},
		{"project underscore", func(c *Config) { c.Testnet.Project = "allegro_net" }, "Project"},
		{"project starting with a digit", func(c *Config) { c.Testnet.Project = "1net" }, "Project"},
		{"project too long", func(c *Config) { c.Testnet.Project = strings.Repeat("a", 44) }, "Project"},
		{"testnet field", func(c *Config) { c.Testnet.Validators = 0 }, "Validators"},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
		if _, gerr := Generate(cfg, t.TempDir()); gerr == nil {
			t.Errorf("%s: Generate accepted an invalid config", tc.name)
		}
	}
	// The longest project the names allow.
	cfg := DefaultConfig()
	cfg.Testnet.Project = strings.Repeat("a", maxSetName-len("-devchain"))
	if err := cfg.Validate(); err != nil {
		t.Errorf("project of %d characters: %v", len(cfg.Testnet.Project), err)
	}
}

func TestGenerateRefusesExistingManifests(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(DefaultConfig(), dir); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, ManifestsFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(DefaultConfig(), dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Generate: %v", err)
	}
	after, err := os.ReadFile(filepath.Join(dir, ManifestsFile))
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the first manifests changed (%v)", err)
	}
}

func TestWriteSummary(t *testing.T) {
	dir := t.TempDir()
	n, err := Generate(DefaultConfig(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	n.WriteSummary(&b, dir)
	for _, want := range []string{"4 validators (f=1, quorum 3)", "kubectl apply -k " + dir, n.Sidecars[3].Pod, n.ChainRPC} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
