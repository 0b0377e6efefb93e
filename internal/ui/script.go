package ui

// script refreshes the page from ui/mesh.json every two seconds and runs
// the check form. It writes only with textContent and setAttribute, never
// as markup, so names from the mesh stay text. The cells match
// workloadCells, edgeCells, policyCells and caCells.
const script = `"use strict";
(function(){
const $=id=>document.getElementById(id);
let model=null;
function num(f){return Number.isInteger(f)?String(f):f.toFixed(2)}
function dash(s){return s?s:"-"}
function dur(sec){let d=Math.trunc(sec),sign="";if(d<0){sign="-";d=-d}
const days=Math.floor(d/86400),h=Math.floor(d%86400/3600),m=Math.floor(d%3600/60),s=d%60;
if(days>0)return sign+days+"d"+h+"h";if(h>0)return sign+h+"h"+m+"m";return sign+m+"m"+s+"s"}
function when(t){return t.slice(0,19).replace("T"," ")}
function denied(d){if(!d)return "0";const ks=Object.keys(d).sort();let t=0;const ps=[];
for(const k of ks){t+=d[k];ps.push((k===""?"no ALLOW matched":k)+": "+num(d[k]))}return num(t)+" ("+ps.join(", ")+")"}
function wcells(w){let mtls=w.mtlsMode;if(w.mtlsPolicy)mtls+=" ("+w.mtlsPolicy+")";if(w.portModes)mtls+=" ports "+w.portModes.join(" ");
let px="not connected";if(w.connected){px="connected, "+(w.synced?"in sync":"not in sync");if(w.configVersion)px+=" @"+w.configVersion;if(w.lastNack)px+="; refused: "+w.lastNack}
let c="-";if(w.cert){c=when(w.cert.notAfter)+" (in "+dur(w.cert.expiresInSeconds)+", "+num(w.cert.rotations)+" rotations";
if(w.cert.renewalFailures>0)c+=", "+num(w.cert.renewalFailures)+" failed renewals";c+=")"}
if(w.metricsError)c="metrics: "+w.metricsError;
const ls=Object.keys(w.labels||{}).map(k=>k+"="+w.labels[k]).sort();
return [["key",w.key],["labels",ls.join(" ")],["identity",w.identity],["mtls",mtls],["proxy",px],["cert",c],["denied",denied(w.denied)]]}
function ecells(e){const cs=Object.keys(e.codes||{}).sort().map(c=>c+":"+num(e.codes[c]));
return [["src",e.source],["dst",e.destination],["service",dash(e.service)],["protocol",e.protocol],["security",e.security],
["requests",num(e.requests)],["rate",e.rate.toFixed(2)],["denied",num(e.denied)],["denied-rate",e.deniedRate.toFixed(2)],["errors",num(e.errors)],["codes",cs.join(" ")]]}
function pcells(p){let a=p.action||"";if(p.dryRun)a+=" (dry run)";
return [["kind",p.kind],["name",p.namespace+"/"+p.name],["action",dash(a)],["rules",String(p.rules)],["selects",p.selects.length?p.selects.join(" "):"no workload"]]}
function fill(id,rows,cells,attrs){const tb=$(id).tBodies[0];const out=document.createDocumentFragment();
for(const r of rows){const tr=document.createElement("tr");for(const [k,v] of attrs(r))tr.setAttribute(k,v);
for(const [cls,text] of cells(r)){const td=document.createElement("td");td.className=cls;td.textContent=text;tr.appendChild(td)}
out.appendChild(tr)}tb.replaceChildren(out)}
function render(m){model=m;
$("meta").textContent="trust domain "+m.trustDomain+" · config "+dash(m.configVersion)+" · "+m.workloads.length+" workloads · updated "+m.generated.slice(11,19);
fill("workloads",m.workloads,wcells,w=>[["data-key",w.key]]);
fill("edges",m.edges,ecells,e=>[["data-src",e.source],["data-dst",e.destination],["data-protocol",e.protocol]]);
fill("policies",m.policies,pcells,()=>[]);
fill("ca",m.ca,c=>[["role",c.role],["subject",c.subject],["expires",when(c.notAfter)+" (in "+dur(c.expiresInSeconds)+")"]],()=>[]);
const sel=document.querySelector("#check select"),cur=sel.value;const opts=document.createDocumentFragment();
for(const w of m.workloads){const o=document.createElement("option");o.value=w.key;o.textContent=w.key;opts.appendChild(o)}
sel.replaceChildren(opts);if(cur)sel.value=cur;
document.body.setAttribute("data-generated",m.generated)}
async function refresh(){try{const r=await fetch("ui/mesh.json",{cache:"no-store"});if(!r.ok)throw new Error("HTTP "+r.status);
render(await r.json());$("status").textContent=""}catch(e){$("status").textContent="refresh failed: "+e.message}}
$("check").addEventListener("submit",async ev=>{ev.preventDefault();const f=ev.target;const out=$("check-result");
const w=(model?model.workloads:[]).find(x=>x.key===f.workload.value);
if(!w){out.textContent="choose a workload";return}
const ns=w.key.split("/")[0];const sa=(w.identity.match(/\/sa\/([^/]+)$/)||[])[1];
const req={workload:{namespace:ns,labels:w.labels||{}},source:{},request:{port:Number(f.port.value)}};
if(sa)req.workload.serviceAccount=sa;
if(f.principal.value)req.source.principal=f.principal.value;
if(f.method.value){req.request.method=f.method.value;if(f.host.value)req.request.host=f.host.value;if(f.path.value)req.request.path=f.path.value}
try{const r=await fetch("ui/check",{method:"POST",headers:{"Content-Type":"application/json"},body:JSON.stringify(req)});
const a=await r.json();if(a.error){out.textContent="error: "+a.error;return}
let t=a.decision;if(a.stage)t+=" at "+a.stage;if(a.policy)t+=" by "+a.policy;if(a.rule!==undefined)t+=" rule "+a.rule;
t+="\n"+a.reason+"\nmTLS mode: "+a.peerAuthentication.mode;out.textContent=t;out.setAttribute("data-decision",a.decision)}
catch(e){out.textContent="check failed: "+e.message}});
refresh();setInterval(refresh,2000);
})();`
