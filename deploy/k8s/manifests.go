package k8s

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/allegro-mesh/allegro/deploy/testnet"
)

// Label keys (the recommended app.kubernetes.io set) and values.
const (
	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	// labelLightClient tells the light clients' pods apart.
	labelLightClient = "light-client"

	componentSidecar     = "sidecar"
	componentChain       = "devchain"
	componentLightClient = "light-client"
)

// Paths and names inside the pods, as in the compose file.
const (
	dataMount      = "/data"
	configMount    = "/config"
	keysMount      = "/keys"
	installMount   = "/install"
	committeeKey   = "committee.toml"
	dataVolume     = "data"
	keysVolume     = "keys"
	configVolume   = "committee"
	envPodName     = "POD_NAME"
	envPodIndex    = "POD_INDEX"
	sidecarName    = "sidecar"
	installName    = "install-key"
	chainContainer = "devchain"
	// podIndexRef is the validator's number (the pod's ordinal, from 1).
	podIndexRef = "v$(" + envPodIndex + ")"
)

// Probe timing. Readiness follows the compose health check (the sidecar
// can certify payments: a quorum of peers, a fresh chain head); liveness
// is /livez, which depends on nothing outside the process, so a sidecar is
// never restarted because its chain or peers are away.
const (
	probeTimeout           = 3
	readinessPeriod        = 5
	readinessFailures      = 3
	livenessPeriod         = 10
	livenessFailures       = 6
	startupPeriod          = 2
	startupFailures        = 90 // three minutes to serve the API (or the chain's JSON-RPC)
	sidecarGracePeriod     = 20 // compose's stop_grace_period
	lightClientGracePeriod = 10
)

// keyFileMode is the mode of the key files in the installer's Secret
// volume: the installer runs as the image's user (root), and the sidecar
// never reads this copy but the 0600 one the installer writes.
const keyFileMode int32 = 0o400

func (c Config) labels(component string) map[string]string {
	return map[string]string{labelName: "allegro", labelInstance: c.Testnet.Project, labelComponent: component}
}

func (c Config) meta(name string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{labelManagedBy: "allegro-dev"}
	for k, v := range labels {
		l[k] = v
	}
	return metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: l}
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// podIndexEnv is the pod's ordinal, which the StatefulSet controller puts
// in the pod's apps.kubernetes.io/pod-index label.
func podIndexEnv() corev1.EnvVar {
	return fieldEnv(envPodIndex, "metadata.labels['"+appsv1.PodIndexLabel+"']")
}

func httpProbe(path string, period, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("api")}},
		PeriodSeconds:    period,
		TimeoutSeconds:   probeTimeout,
		FailureThreshold: failures,
	}
}

func claim(name, size, class string) corev1.PersistentVolumeClaim {
	pvc := corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	if class != "" {
		pvc.Spec.StorageClassName = &class
	}
	return pvc
}

func committeeVolume(name string) corev1.Volume {
	return corev1.Volume{Name: configVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: name},
		Items:                []corev1.KeyToPath{{Key: committeeKey, Path: committeeKey}},
	}}}
}

// manifests returns testnet.yaml: every object, in creation order.
func (c Config) manifests(n *Network, committeeTOML []byte, keyFiles map[string][]byte) ([]byte, error) {
	objs := []any{
		&corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{
			Name: c.Namespace, Labels: map[string]string{labelManagedBy: "allegro-dev", labelInstance: c.Testnet.Project},
		}},
		&corev1.ConfigMap{
			TypeMeta: typeMeta("v1", "ConfigMap"), ObjectMeta: c.meta(c.committeeMap(), c.labels(componentSidecar)),
			Data: map[string]string{committeeKey: string(committeeTOML)},
		},
		&corev1.Secret{
			TypeMeta: typeMeta("v1", "Secret"), ObjectMeta: c.meta(c.keysSecret(), c.labels(componentSidecar)),
			Type: corev1.SecretTypeOpaque, Data: keyFiles,
		},
	}
	objs = append(objs, c.chainObjects()...)
	objs = append(objs, c.sidecarObjects(n)...)
	for j := 1; j <= c.Testnet.LightClients; j++ {
		objs = append(objs, c.lightClientDeployment(j))
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# Allegro test network %q: %d validators (quorum %d), %d light client(s), dev chain %d, namespace %s.\n",
		n.Project, n.Validators, n.Quorum, len(n.LightClients), c.Testnet.ChainID, c.Namespace)
	b.WriteString("# Generated by `allegro-dev testnet gen --format k8s`; the keys in the Secret are throw-away TEST keys.\n")
	b.WriteString("# The committee names this namespace and cluster domain: regenerate rather than move it.\n")
	fmt.Fprintf(&b, "# Image %s: push it to a registry every node can pull from.\n", c.Testnet.Image)
	for i, o := range objs {
		y, err := marshal(o)
		if err != nil {
			return nil, fmt.Errorf("k8s: marshal %T: %w", o, err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// marshal writes o as YAML without the empty status blocks that the typed
// structs carry (the cluster writes status; a manifest has none).
func marshal(o any) ([]byte, error) {
	j, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	delete(doc, "status")
	if spec, ok := doc["spec"].(map[string]any); ok {
		if claims, ok := spec["volumeClaimTemplates"].([]any); ok {
			for _, c := range claims {
				if c, ok := c.(map[string]any); ok {
					delete(c, "status")
				}
			}
		}
	}
	if j, err = json.Marshal(doc); err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

// chainObjects are the dev chain's StatefulSet (one pod, state on its
// claim, so a restart keeps the chain) and Service.
func (c Config) chainObjects() []any {
	name, labels := c.chainName(), c.labels(componentChain)
	tn := c.Testnet
	probe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{
				"/allegro", "healthcheck", "--quiet", "--jsonrpc", "--url", fmt.Sprintf("http://127.0.0.1:%d", chainPort)}}},
			PeriodSeconds: period, TimeoutSeconds: probeTimeout, FailureThreshold: failures,
		}
	}
	one, grace := int32(1), int64(sidecarGracePeriod)
	set := &appsv1.StatefulSet{
		TypeMeta: typeMeta("apps/v1", "StatefulSet"), ObjectMeta: c.meta(name, labels),
		Spec: appsv1.StatefulSetSpec{
			Replicas: &one, ServiceName: name,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name: chainContainer, Image: tn.Image, ImagePullPolicy: c.ImagePullPolicy,
						// The dev chain is a development tool: allegro-dev, in test images only.
						Command: []string{"/allegro-dev"},
						Args: []string{"devchain", "--host", "0.0.0.0", "--port", strconv.Itoa(chainPort),
							"--datadir", dataMount + "/chain", "--chain-id", strconv.FormatUint(tn.ChainID, 10),
							"--block-period", tn.BlockPeriod.String(), "--load-accounts", strconv.Itoa(tn.LoadAccounts)},
						Ports:          []corev1.ContainerPort{{Name: "rpc", ContainerPort: chainPort, Protocol: corev1.ProtocolTCP}},
						VolumeMounts:   []corev1.VolumeMount{{Name: dataVolume, MountPath: dataMount}},
						StartupProbe:   probe(startupPeriod, startupFailures),
						ReadinessProbe: probe(readinessPeriod, readinessFailures),
						LivenessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("rpc")}},
							PeriodSeconds: livenessPeriod, TimeoutSeconds: probeTimeout, FailureThreshold: livenessFailures,
						},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{claim(dataVolume, c.ChainDataSize, c.StorageClass)},
		},
	}
	svc := &corev1.Service{
		TypeMeta: typeMeta("v1", "Service"), ObjectMeta: c.meta(name, labels),
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "rpc", Port: chainPort, TargetPort: intstr.FromString("rpc"), Protocol: corev1.ProtocolTCP}},
		},
	}
	return []any{svc, set}
}

// sidecarObjects are the sidecars' headless Service (stable pod names),
// API Service, StatefulSet and, when the committee tolerates a fault, a
// PodDisruptionBudget.
func (c Config) sidecarObjects(n *Network) []any {
	tn := c.Testnet
	labels := c.labels(componentSidecar)
	p2pPort := int32(tn.P2PPort)
	headless := &corev1.Service{
		TypeMeta: typeMeta("v1", "Service"), ObjectMeta: c.meta(c.meshService(), labels),
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			// Peers must find a sidecar before it is ready: it becomes
			// ready only once it sees a quorum of them.
			PublishNotReadyAddresses: true,
			Selector:                 labels,
			Ports: []corev1.ServicePort{
				{Name: "p2p", Port: p2pPort, TargetPort: intstr.FromString("p2p"), Protocol: corev1.ProtocolTCP},
				{Name: "p2p-quic", Port: p2pPort, TargetPort: intstr.FromString("p2p-quic"), Protocol: corev1.ProtocolUDP},
				{Name: "api", Port: apiPort, TargetPort: intstr.FromString("api"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	api := &corev1.Service{
		TypeMeta: typeMeta("v1", "Service"), ObjectMeta: c.meta(c.apiService(), labels),
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "api", Port: apiPort, TargetPort: intstr.FromString("api"), Protocol: corev1.ProtocolTCP}},
		},
	}

	// The same ALLEGRO_* settings as the compose file's sidecars; only the
	// chain's and the sidecar's own addresses are names instead of IPs.
	hostTemplate := c.podHost("$(" + envPodName + ")")
	env := []corev1.EnvVar{
		fieldEnv(envPodName, "metadata.name"),
		podIndexEnv(),
		{Name: "ALLEGRO_DATA_DIR", Value: dataMount},
		{Name: "ALLEGRO_KEY_FILE", Value: dataMount + "/" + testnet.InstalledKeyFile},
		{Name: "ALLEGRO_COMMITTEE_FILE", Value: configMount + "/" + committeeKey},
		{Name: "ALLEGRO_CHAIN_RPC", Value: n.ChainRPC},
		{Name: "ALLEGRO_API_LISTEN", Value: fmt.Sprintf("0.0.0.0:%d", apiPort)},
		{Name: "ALLEGRO_P2P_LISTEN", Value: fmt.Sprintf("/ip4/0.0.0.0/tcp/%d,/ip4/0.0.0.0/udp/%d/quic-v1", tn.P2PPort, tn.P2PPort)},
		{Name: "ALLEGRO_P2P_ANNOUNCE", Value: strings.Join(meshAddrs(hostTemplate, tn.P2PPort), ",")},
		{Name: "ALLEGRO_LOG_LEVEL", Value: tn.LogLevel},
	}

	// Each init container sees only its own key: the Secret's vI.key at
	// vI/vI.key, of which the mount takes the directory vI.
	var items []corev1.KeyToPath
	for _, s := range n.Sidecars {
		mode := keyFileMode
		items = append(items, corev1.KeyToPath{Key: s.Name + ".key", Path: s.Name + "/" + s.Name + ".key", Mode: &mode})
	}
	sort.Slice(items, func(a, b int) bool { return items[a].Key < items[b].Key })
	install := corev1.Container{
		Name: installName, Image: tn.Image, ImagePullPolicy: c.ImagePullPolicy,
		Command: []string{"/allegro-dev"},
		// Writes /install/vI/validator.key (mode 0600, checked to be vI's
		// key), which the sidecar sees as /data/validator.key.
		Args: []string{"testnet", "install-keys", "--keys", keysMount, "--into", installMount, podIndexRef},
		Env:  []corev1.EnvVar{podIndexEnv()},
		VolumeMounts: []corev1.VolumeMount{
			{Name: keysVolume, MountPath: keysMount, SubPathExpr: podIndexRef, ReadOnly: true},
			{Name: dataVolume, MountPath: installMount},
		},
	}
	sidecar := corev1.Container{
		Name: sidecarName, Image: tn.Image, ImagePullPolicy: c.ImagePullPolicy,
		Args: []string{"sidecar"},
		Env:  env,
		Ports: []corev1.ContainerPort{
			{Name: "api", ContainerPort: apiPort, Protocol: corev1.ProtocolTCP},
			{Name: "p2p", ContainerPort: p2pPort, Protocol: corev1.ProtocolTCP},
			{Name: "p2p-quic", ContainerPort: p2pPort, Protocol: corev1.ProtocolUDP},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: dataVolume, MountPath: dataMount, SubPathExpr: podIndexRef},
			{Name: configVolume, MountPath: configMount, ReadOnly: true},
		},
		StartupProbe:   httpProbe("/livez", startupPeriod, startupFailures),
		LivenessProbe:  httpProbe("/livez", livenessPeriod, livenessFailures),
		ReadinessProbe: httpProbe("/readyz", readinessPeriod, readinessFailures),
	}
	replicas, grace := int32(tn.Validators), int64(sidecarGracePeriod)
	set := &appsv1.StatefulSet{
		TypeMeta: typeMeta("apps/v1", "StatefulSet"), ObjectMeta: c.meta(c.sidecarSet(), labels),
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: c.meshService(),
			// Pod <set>-I runs validator vI.
			Ordinals: &appsv1.StatefulSetOrdinals{Start: 1},
			// All at once: none is ready before a quorum runs.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels: labels,
					Annotations: map[string]string{
						"prometheus.io/scrape": "true",
						"prometheus.io/port":   strconv.Itoa(apiPort),
						"prometheus.io/path":   "/metrics",
					},
				},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					// Spread the validators over the nodes where there are
					// several; one node still runs them all.
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
								TopologyKey:   corev1.LabelHostname,
							},
						}},
					}},
					InitContainers: []corev1.Container{install},
					Containers:     []corev1.Container{sidecar},
					Volumes: []corev1.Volume{
						{Name: keysVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: c.keysSecret(), Items: items}}},
						committeeVolume(c.committeeMap()),
					},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{claim(dataVolume, c.DataSize, c.StorageClass)},
		},
	}
	objs := []any{headless, api, set}
	if n.F > 0 {
		// Voluntary disruptions (node drains) take at most f sidecars at
		// once, so a quorum keeps running.
		maxUnavailable := intstr.FromInt32(int32(n.F))
		objs = append(objs, &policyv1.PodDisruptionBudget{
			TypeMeta: typeMeta("policy/v1", "PodDisruptionBudget"), ObjectMeta: c.meta(c.sidecarSet(), labels),
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &maxUnavailable, Selector: &metav1.LabelSelector{MatchLabels: labels}},
		})
	}
	return objs
}

// lightClientDeployment runs light client j (1-based) as the compose file
// does: `allegro watch` on its share of the load accounts.
func (c Config) lightClientDeployment(j int) *appsv1.Deployment {
	tn := c.Testnet
	name := c.lightClient(j)
	labels := c.labels(componentLightClient)
	labels[labelLightClient] = "lc" + strconv.Itoa(j)
	args := []string{"watch", "--json", "--with-qc", "--committee", configMount + "/" + committeeKey,
		"--listen", "/ip4/0.0.0.0/tcp/0", "--listen", "/ip4/0.0.0.0/udp/0/quic-v1", "--log-level", tn.LogLevel}
	for _, a := range c.watched(j) {
		args = append(args, "--address", a)
	}
	one, grace := int32(1), int64(lightClientGracePeriod)
	return &appsv1.Deployment{
		TypeMeta: typeMeta("apps/v1", "Deployment"), ObjectMeta: c.meta(name, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					// A light client serves no HTTP: no probes.
					Containers: []corev1.Container{{
						Name: "watch", Image: tn.Image, ImagePullPolicy: c.ImagePullPolicy,
						Args:         args,
						VolumeMounts: []corev1.VolumeMount{{Name: configVolume, MountPath: configMount, ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{committeeVolume(c.committeeMap())},
				},
			},
		},
	}
}

// kustomization is kustomization.yaml: the manifests, for kubectl apply -k
// and for patches layered on top.
func kustomization() []byte {
	return []byte(`# kubectl apply -k . applies testnet.yaml; add patches here (storage, resources,
# node selection). Do not set a namespace: the committee names the one the
# network was generated for.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ` + ManifestsFile + "\n")
}
