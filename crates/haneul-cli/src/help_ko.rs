//! Korean `--help`: the Korean text of every command's summary and every argument's help,
//! applied to the clap command tree when the locale is Korean. English stays where clap reads
//! it (the doc comments on the argument structs); this table holds only the Korean.
//!
//! Keys: a command is its path without `haneul` (`submit`, `award create`; the root is
//! `haneul`); an argument is `PATH/ID` (`submit/gpus`), or `*/ID` for an argument that means
//! the same wherever it appears (`*/json`, `*/server`). A test walks the whole tree and fails on
//! a command or an argument without Korean, and on a shared `*/ID` whose English differs
//! between commands (such an argument needs a `PATH/ID` of its own).

use clap::Command;

/// `(key, Korean)`.
const KO: &[(&str, &str)] = &[
    ("haneul", "공유 국가 GPU 센터를 위한 컨트롤 플레인"),
    (
        "up",
        "이 머신 하나로 센터 전체 실행: 서버, 로컬 에이전트, 데모 프로젝트와 사용자, 클라이언트 설정",
    ),
    ("submit", "작업 제출 (sbatch 처럼): 작업 번호를 출력"),
    ("queue", "내 작업 목록 (squeue 처럼)"),
    ("show", "작업 하나의 상태와 실행 기록 보기"),
    ("logs", "작업 출력 보기"),
    (
        "eff",
        "작업이 GPU 와 CPU 를 얼마나 잘 썼는지 보기 (seff 처럼): 사용률, 메모리, 에너지",
    ),
    ("cancel", "작업 취소 (scancel 처럼)"),
    (
        "run",
        "GPU 노드에서 프로그램을 대화형으로 실행 (srun --pty 처럼): 시작을 기다린 뒤 이 터미널을 연결; 프로그램의 종료 상태가 이 명령의 종료 상태",
    ),
    (
        "attach",
        "실행 중인 대화형 작업 (`haneul run`) 의 터미널에 이 터미널을 연결",
    ),
    ("run/gpus", "태스크 하나의 GPU 수"),
    (
        "run/nodes",
        "노드 수: 대화형 작업은 노드 하나에서 태스크 하나를 실행",
    ),
    ("run/name", "작업 이름 (기본값: 프로그램 이름)"),
    (
        "run/project",
        "프로젝트 번호 (기본값: 설정의 project, HANEUL_PROJECT, 또는 내 유일한 프로젝트)",
    ),
    (
        "run/pty",
        "이 터미널을 raw 모드로 바꿔 모든 키 (Ctrl-C 포함) 를 원격 프로그램에 보냄 (ssh 처럼); 없으면 입력한 줄을 보내고 Ctrl-C 를 전달",
    ),
    ("attach/id", "대화형 작업의 번호"),
    (
        "server/terminal_grace",
        "연결이 끊긴 대화형 작업 (`haneul run --pty`) 이 소유자의 재연결을 기다리는 초; 지나면 작업 취소",
    ),
    (
        "up/terminal_grace",
        "대화형 작업이 소유자의 재연결을 기다리는 초 (서버에 전달)",
    ),
    (
        "server/jupyter_idle",
        "포털에서 시작한 JupyterLab 세션이 사용 없이 유지되는 분; 지나면 커널을 정리하고 세션 (과 작업) 종료, GPU 반환",
    ),
    (
        "up/jupyter_idle",
        "포털 JupyterLab 세션이 사용 없이 유지되는 분 (서버에 전달)",
    ),
    (
        "attach/no_pty",
        "이 터미널을 raw 모드로 바꾸지 않고 그대로 둠",
    ),
    ("run/json", "표 대신 스크립트용 JSON 출력"),
    ("attach/json", "표 대신 스크립트용 JSON 출력"),
    (
        "run/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "attach/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "run/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "attach/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "run/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "attach/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "usage",
        "프로젝트와 GPU 모델별 사용한 GPU 시간 (sacct 처럼)",
    ),
    ("whoami", "내 토큰의 사용자, 역할, 기관, 프로젝트 보기"),
    (
        "login",
        "소속 기관의 신원 제공자로 로그인 (장치 흐름: URL 과 코드를 출력)",
    ),
    (
        "logout",
        "로그아웃: `haneul login` 의 토큰과 제공자의 갱신 토큰을 폐기",
    ),
    (
        "login/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    ("login/json", "표 대신 스크립트용 JSON 출력"),
    (
        "login/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "login/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "logout/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    ("logout/json", "표 대신 스크립트용 JSON 출력"),
    (
        "logout/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "logout/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "login/issuer",
        "신원 제공자의 id (`haneul login --list` 로 확인); 기본값: 터미널 로그인을 제공하는 유일한 제공자",
    ),
    (
        "login/list",
        "서버가 제공하는 신원 제공자 목록을 보이고 끝냄",
    ),
    (
        "server/oidc_config",
        "사람들이 로그인할 신원 제공자를 담은 TOML 파일 (docs/oidc.md): 표시 이름과 클레임 매핑 규칙을 가진 `[[issuer]]` 여러 개",
    ),
    (
        "server/oidc_issuer",
        "신원 제공자 하나의 issuer URL (--oidc-config 의 제공자 외에); 계정을 만들려면 매핑 규칙이 필요",
    ),
    (
        "server/oidc_client_id",
        "--oidc-issuer 에서 포털의 클라이언트 id",
    ),
    (
        "server/oidc_client_secret_file",
        "--oidc-client-id 의 클라이언트 비밀을 담은 파일",
    ),
    (
        "server/oidc_name",
        "--oidc-issuer 버튼에 보일 이름 (\"NAME 계정으로 로그인\"); 기본값: 호스트 이름",
    ),
    (
        "server/oidc_map",
        "--oidc-issuer 의 매핑 규칙 DOMAIN=ORG (반복 가능): 확인된 이메일이 DOMAIN 인 사람은 기관 ORG 의 구성원 계정을 받고, 관리자가 승인할 때까지 대기. 더 풍부한 규칙은 --oidc-config",
    ),
    (
        "project",
        "프로젝트: 생성, 목록, 보기, 할당량 설정 (운영자)",
    ),
    ("user", "사용자: 생성, 목록, 보기 (운영자)"),
    ("token", "토큰: 발급, 목록, 폐기"),
    ("pool", "GPU 풀: 생성, 목록 (운영자)"),
    ("node", "노드: 목록, 보기, 드레인, 재개 (운영자)"),
    ("audit", "감사 로그: 조건별 목록, 해시 체인 검증"),
    ("completions", "셸 자동완성 스크립트 출력 (bash, zsh, fish)"),
    (
        "server",
        "컨트롤 플레인 실행: REST API, 스케줄러, 에이전트 프로토콜",
    ),
    (
        "agent",
        "노드 에이전트 실행: 이 노드의 GPU 를 등록하고 배정된 작업 실행",
    ),
    ("sim", "여러 정책으로 워크로드를 재현하고 보고서 작성"),
    ("plan", "한 워크로드로 후보 장비 구성 비교"),
    ("bench", "스케줄링 엔진 벤치마크"),
    ("swarm", "규모 및 장애 시험용: 한 프로세스에 여러 모의 노드"),
    ("org", "기관: 수출 심사를 거친 등록, 목록, 조회, 검증"),
    ("award", "배정: 부여, 목록, 추가 및 회수, 미사용, 알림"),
    ("call", "공모: 트랙별 개설, 마감, 순위 결정 및 배정"),
    ("application", "공모 신청서와 심사 점수"),
    ("statement", "과제 및 기관별 월간 명세서"),
    // Subcommands.
    ("project create", "기관에 프로젝트 생성"),
    ("project list", "볼 수 있는 프로젝트"),
    ("project show", "프로젝트 하나와 할당량"),
    (
        "project set-quota",
        "프로젝트 할당량 교체 (지정하지 않은 모델은 할당량을 잃음)",
    ),
    (
        "user create",
        "사용자 생성 (토큰은 `haneul token create --user ID`)",
    ),
    (
        "user update",
        "사용자의 Unix uid 또는 기본 gid 설정 (센터 관리자)",
    ),
    ("user list", "볼 수 있는 사용자"),
    ("user show", "사용자 한 명"),
    (
        "user approve",
        "기관 계정으로 로그인해 승인을 기다리는 사람을 들여보냄 (그 조직의 관리자 또는 센터 관리자)",
    ),
    (
        "token create",
        "토큰 발급 (나 또는 내가 관리하는 사용자용). 비밀 값은 한 번만 표시됩니다",
    ),
    (
        "token list",
        "내 토큰 (센터 관리자는 모든 토큰); 비밀 값은 다시 표시되지 않음",
    ),
    ("token revoke", "토큰 폐기: 즉시 사용할 수 없게 됨"),
    (
        "pool create",
        "GPU 풀 생성 (에이전트가 `--pool NAME` 으로 등록하면 노드가 합류)",
    ),
    ("pool list", "모든 풀"),
    ("node list", "모든 노드와 상태"),
    ("node show", "노드 하나"),
    (
        "node drain",
        "노드에서 실행 중인 작업은 끝내고 새 작업은 시작하지 않음",
    ),
    ("node resume", "드레인한 노드를 다시 서비스에 투입"),
    ("audit list", "감사 로그 항목, 오래된 순, 조건별"),
    (
        "audit verify",
        "감사 로그 해시 체인을 다시 계산; 손상되었으면 종료 코드 1. --checkpoint 와 함께 쓰면 서버의 서명된 체크포인트도 검사: 체크포인트가 가리키는 항목이 사라졌거나 (잘린 끝) 바뀌었으면 (다시 쓴 항목) 실패",
    ),
    (
        "org create",
        "기관 등록; 수출 심사는 제한 국가와 거래 제한 대상을 거부",
    ),
    ("org list", "기관 목록"),
    ("org show", "기관 하나 보기"),
    (
        "org verify",
        "기관을 검증됨 (또는 대기, 정지) 으로 표시; 검증된 기관만 작업을 실행",
    ),
    (
        "org import-denied",
        "거래 제한 대상 목록 가져오기 (`name`, `country`, 선택적으로 `source` 열이 있는 CSV)",
    ),
    (
        "award create",
        "프로젝트에 한 GPU 모델의 GPU 시간을 기간을 정해 배정",
    ),
    (
        "award list",
        "배정과 잔량 (`haneul usage` 처럼, 볼 수 있는 모든 프로젝트)",
    ),
    ("award adjust", "배정에 시간 추가 (양수) 또는 회수 (음수)"),
    ("award underuse", "GPU 가 놀고 있는 배정: 회수 후보"),
    (
        "award notices",
        "운영자에게 보낸 알림 (배정 경고, 소진된 배정, 연산량 기준, 미사용)",
    ),
    ("call create", "사업의 공모를 하나 이상의 트랙으로 개설"),
    ("call list", "공모 목록과 상태"),
    ("call show", "공모 하나 보기: 트랙과 배정 후의 결과"),
    ("call close", "신청 접수 마감"),
    ("call open", "신청 접수 재개"),
    (
        "call award",
        "신청서를 점수순으로 정렬하고 공모 용량 안에서 배정",
    ),
    ("application create", "소속 기관의 프로젝트로 공모에 신청"),
    ("application list", "공모의 신청서와 점수"),
    ("application score", "심사 점수 기록 (0 ~ 10)"),
    (
        "bench openb",
        "Alibaba openb pod 목록을 FGD 논문의 방법으로 재현하고 GPU 할당률 보고",
    ),
    (
        "bench openb-variants",
        "openb 기본 목록에서 파생한 워크로드 묶음 (FGD 논문의 민감도 분석) 을 여러 배치 전략으로 재현; 변형, 배치, 구성마다 한 행",
    ),
    (
        "bench engine",
        "큰 장비 구성과 대기열에서 전체 스케줄링 패스와 증분 패스의 시간 측정",
    ),
    (
        "bench centre",
        "이 머신 하나로 센터 전체: 실제 서버 프로세스, 모의 노드 무리, 긴 대기열과 꾸준한 제출; 제출부터 시작까지의 지연을 보고",
    ),
    (
        "bench gang",
        "실제 서버와 모의 노드 무리로 전체 플릿에 걸친 갱 하나를 시작해 할당, 각 노드 전달, 각 시작 보고를 단계별로 측정",
    ),
    (
        "bench submit",
        "제출 한 건의 경로: 연결 하나를 유지한 클라이언트의 단독 제출과, 작업마다 `haneul submit`을 시작하는 셸 반복문을 프로세스 시작 비용과 함께 측정",
    ),
    (
        "bench agent",
        "실제 에이전트를 거쳐 서버의 시작 결정부터 태스크 프로세스 시작까지의 시간 측정",
    ),
    (
        "bench half-open",
        "느린 헤더 공격: 모의 노드가 하트비트를 보내는 동안 실제 서버에 반쯤 열린 연결을 유지; /healthz 지연과 하트비트 처리율 보고",
    ),
    (
        "haneul@after",
        "예시:\n  haneul up                                   이 머신 하나로 센터 전체 실행\n  haneul submit --gpus 1 -- python train.py   그다음: haneul queue, haneul logs ID\n  haneul completions bash > ~/.local/share/bash-completion/completions/haneul\n\n종료 상태: 0 완료, 1 오류 (메시지가 다음에 할 일을 알려 줌), 2 사용법 오류.\nLANG=ko_KR.UTF-8 (또는 LC_ALL, LC_MESSAGES) 이면 한국어 메시지; NO_COLOR 는 색을 끔.",
    ),
    (
        "server@after",
        "예시:\n  haneul server --data-dir /var/lib/haneul\n  haneul server --data-dir ./state --listen 127.0.0.1:8470\n  haneul server --data-dir ./state --database postgres://haneul@db/haneul\n  haneul server --data-dir /var/lib/haneul --listen 0.0.0.0:8470 \\\n      --tls-cert /etc/haneul/server.pem --tls-key /etc/haneul/server.key\n\nSIGHUP 을 받으면 인증서와 키를 다시 읽습니다 (재시작 없이 교체).",
    ),
    (
        "swarm@after",
        "예시:\n  haneul swarm --server http://127.0.0.1:8470 --token-file agent.token --nodes 1250 --gpus 8xH200\n  haneul swarm --server http://127.0.0.1:8470 --token-file agent.token --nodes 4 --events ev.jsonl\n\n태스크의 모의 실행 시간은 명령에서 읽습니다: `sleep` 다음의 숫자 (어느 인자든, 그래서 `sh -c 'sleep 2.5'`\n도 됨); 종료 코드는 `exit` 다음의 숫자, `false` 명령이면 1; 그 밖에는 곧바로 0 으로 끝납니다.",
    ),
    (
        "submit@after",
        "예시:\n  haneul submit --gpus 1 -- python train.py\n  haneul submit --gpus 16 --nodes 2 --time 2h --name llm -- torchrun train.py\n  haneul submit --gpus-per-node 8 --nodes 4 --gpu-model H200 --priority high -- ./run.sh\n  haneul submit --dependency afterok:41 -- python eval.py\n  haneul submit --array 0-9%2 --gpus 1 -- sh -c 'python sweep.py --seed $SLURM_ARRAY_TASK_ID'\n  haneul submit job.toml --time 30m        (옵션이 파일보다 우선)\n  haneul submit --gpus 1 --json -- sh -c 'echo $CUDA_VISIBLE_DEVICES'\n  haneul submit --gpus 8 --container-image nvcr.io/nvidia/pytorch:24.10-py3 -- torchrun train.py\n\n작업 파일 (TOML) 에 쓸 수 있는 키: name, gpus, nodes, gpus_per_node, cpus_per_task, gpu_model, time, priority,\ncpus_per_task, dependency, array, project, container_image, command (목록: [\"python\", \"train.py\"]).",
    ),
    (
        "run@after",
        "예시:\n  haneul run --gpus 1 --pty bash\n  haneul run --gpus 2 --time 2h --name debug --pty bash -l\n  haneul run --gpus 1 -- nvidia-smi        (--pty 없음: 출력과 종료 상태만, raw 모드 아님)\n  srun --gres=gpu:1 --pty bash             (Slurm 이름으로 같은 일, docs/slurm.md)\n\n프로그램이 끝나면 작업도 끝나고, 그 종료 상태가 이 명령의 종료 상태입니다. 연결이 끊기면 서버의 유예 시간\n(기본 60 초) 안에 `haneul attach ID` 로 터미널을 다시 잡을 수 있고 그동안의 출력도 보입니다; 지나면 작업은 취소됩니다.",
    ),
    (
        "attach@after",
        "예시:\n  haneul attach 42\n  haneul attach 42 --no-pty     (입력한 줄 그대로, 스크립트가 세션에 입력을 줄 때)\n\n연결하면 같은 작업의 다른 연결에서 터미널을 넘겨받습니다. 작업 소유자 (또는 센터 관리자) 만 연결할 수 있습니다.",
    ),
    // Arguments: `*/ID` where the English is the same in every command.
    (
        "*/action",
        "동작이 이것으로 시작하는 항목만 (job., token.revoke, ...)",
    ),
    ("*/actor", "행위자에 이 글자가 든 항목만"),
    (
        "*/advertise_addr",
        "다른 노드가 이 노드의 태스크에 닿는 주소 (rank 0 이 여기서 도는 갱의 MASTER_ADDR). 기본값: 다른 노드가 해석하는 노드 이름",
    ),
    (
        "*/advertise_url",
        "에이전트와 클라이언트가 이 서버에 닿는 기본 URL (https://ctl-a.example:8470). 서버가 여럿이면 대기 서버는 모든 응답에 리더의 URL 을 알려 클라이언트가 옮겨 갑니다",
    ),
    ("*/after", "이 순번 다음의 항목"),
    (
        "*/array",
        "작업 배열: 0-9, 1,3,5 또는 0-15:4; `%N` 은 한 번에 최대 N 개만 실행 (0-9%2)",
    ),
    (
        "*/audit_checkpoint_interval",
        "감사 체크포인트 간격 (초) (로그가 늘었을 때만 기록)",
    ),
    (
        "*/audit_checkpoints",
        "서명된 감사 체크포인트를 덧붙일 곳 (기본값: DIR/audit-checkpoints.jsonl)",
    ),
    (
        "*/audit_key",
        "감사 체크포인트에 서명하는 ed25519 키 (기본값: 첫 시작 때 만드는 DIR/audit.key). 키 또는 공개 키 사본을 데이터베이스 관리자가 닿지 않는 곳에 두세요",
    ),
    (
        "*/backlog_runtime",
        "밀린 작업의 모의 실행 시간: MIN..MAX 초에서 균등",
    ),
    ("*/block", "풀 안에서 노드의 블록 (네트워크 근접 그룹)"),
    (
        "*/body_timeout",
        "요청 본문 조각 사이의 최대 대기 시간 (초)",
    ),
    (
        "*/budget_krw",
        "감가상각 기간의 예산, 원 (서버, 최대 부하 전력, 운영); 더 비싼 후보는 실행하지 않음",
    ),
    (
        "submit/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "queue/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "show/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "logs/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "cancel/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "usage/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "whoami/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "project/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "project create/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "project list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "project show/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "project set-quota/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "user/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "user create/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "user update/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "user list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "user show/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "user approve/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "token/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "token create/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "token list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "token revoke/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "pool/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "pool create/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "pool list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "node/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "node list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "node show/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "node drain/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "node resume/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "audit/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "audit list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "audit verify/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "org create/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "org list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "org show/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "org verify/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "org import-denied/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "award create/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "award list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "award adjust/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "award underuse/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "award notices/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "call create/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "call list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "call show/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "call close/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "call open/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "call award/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "application create/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "application list/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "application score/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "statement/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    ("swarm/ca_file", "서버 인증서에 서명한 CA 인증서 (PEM)"),
    (
        "agent/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM)",
    ),
    (
        "*/capacity",
        "공모가 모든 트랙을 합쳐 한 번에 배정할 수 있는 GPU 수",
    ),
    (
        "*/cgroup_parent",
        "태스크 cgroup 을 만들 cgroup v2 디렉터리 (에이전트에 위임되고 cgroup.subtree_control 에 cpu 와 memory 가 켜진 곳). 기본값: 에이전트 자신의 cgroup (cgroup v2 가 cpu 와 memory 를 제공할 때); 아니면 rlimit 으로 제한합니다",
    ),
    (
        "*/checkpoint",
        "서버의 체크포인트 파일 (DIR/audit-checkpoints.jsonl) 또는 그 사본",
    ),
    (
        "*/class",
        "academia (대학), institute (연구소), startup (창업·중소기업), enterprise (기업), partner (협력사), public-agency (공공기관)",
    ),
    ("*/command", "실행할 프로그램과 인자"),
    (
        "*/compare",
        "각 변형을 이 폴더에 있는 같은 이름의 공개 파일 (openb_pod_list_<variant>.csv) 과 비교해 얼마나 가까운지 출력",
    ),
    (
        "bench half-open/connections",
        "항상 유지할 반쯤 열린 연결 수",
    ),
    (
        "swarm/connections",
        "하트비트와 등록을 나눠 처리할 작업자 수",
    ),
    (
        "*/container_image",
        "각 태스크를 이 이미지의 컨테이너에서 실행: OCI 참조 (ubuntu:24.04), 또는 루트 파일 시스템 디렉터리나 apptainer .sif 파일의 절대 경로",
    ),
    (
        "*/container_registry",
        "작업의 컨테이너 이미지를 가져올 수 있는 레지스트리 (또는 레지스트리/네임스페이스), 예: nvcr.io/nvidia, docker.io/library (여러 번 지정 가능). 없으면 OCI 이미지를 받지 않습니다",
    ),
    (
        "*/container_rootfs_dir",
        "작업의 루트 파일 시스템 (또는 .sif) 이미지가 있을 수 있는 디렉터리 (여러 번 지정 가능). 없으면 경로 이미지를 받지 않습니다",
    ),
    (
        "*/container_run_arg",
        "모든 컨테이너 실행에 이미지 앞에 붙일 인자 (여러 번 지정 가능), 예: --container-run-arg=--ulimit=nofile=1024:1024",
    ),
    (
        "*/container_runtime",
        "컨테이너 이미지가 있는 작업의 런타임: auto (PATH 의 podman, 없으면 apptainer, 없으면 none), podman, apptainer, none (그런 작업은 여기서 실패)",
    ),
    (
        "*/container_runtime_arg",
        "`run` 앞에 붙일 런타임 자체의 인자 (여러 번 지정 가능), 예: --container-runtime-arg=--runtime=runc --container-runtime-arg=--cgroup-manager=cgroupfs",
    ),
    ("*/country", "본사 국가, ISO 3166-1 alpha-2 (예: KR)"),
    (
        "*/cpus_per_task",
        "태스크당 CPU 코어 수 (GPU 없는 태스크는 반드시 지정)",
    ),
    ("*/csv", "표 대신 CSV 출력 (서버가 만든 형식)"),
    (
        "server/data_dir",
        "SQLite 데이터베이스와 관리자 토큰을 둘 디렉터리",
    ),
    (
        "up/data_dir",
        "데이터베이스, 토큰, 로그를 둘 곳 (기본값 ~/.local/share/haneul)",
    ),
    (
        "bench centre/database",
        "임시 디렉터리의 SQLite 대신 서버가 쓸 PostgreSQL URL",
    ),
    (
        "server/database",
        "데이터 디렉터리의 SQLite 대신 PostgreSQL URL (postgres://...). 여러 서버가 한 데이터베이스를 공유할 수 있습니다: 하나가 주도하고 나머지는 대기",
    ),
    (
        "*/days",
        "배정이 유효한 일수, --from 부터 (없으면 지금부터)",
    ),
    (
        "*/dependency",
        "다른 작업 뒤에 시작: afterok:ID[:ID...] (성공해야 함) 또는 afterany:ID[:ID...]",
    ),
    (
        "*/events",
        "태스크 시작, 종료, 거부된 보고마다 JSON 한 줄을 이 파일에 덧붙임",
    ),
    (
        "*/expires",
        "토큰 유효 기간: 숫자와 s, m, h, d (`90d`, `12h`). 기본값: 사람 토큰은 서버 기본값; 에이전트 토큰은 지정하지 않으면 만료되지 않음",
    ),
    (
        "*/fallback_user",
        "--task-user submitter 일 때 같은 이름의 Unix 계정이 없는 사용자가 쓸 계정; `none` 이면 그런 태스크를 거부 (이유와 함께 실패)",
    ),
    ("*/file", "TOML 작업 파일"),
    (
        "*/fleet",
        "장비 구성 파일 (TOML); --scenario 와 함께 쓰면 시나리오의 장비 구성을 대신함",
    ),
    ("*/fleets", "후보 장비 구성 파일; 후보마다 반복"),
    (
        "*/follow",
        "작업이 끝날 때까지 새 출력을 계속 표시 (--json 이면 한 줄에 한 조각)",
    ),
    (
        "*/frag_cpu_fill_pct",
        "노드의 남은 CPU·메모리가 구성의 GPU당 CPU·메모리로 먹일 수 없는 빈 GPU 용량의 PCT% 를 단편으로 셈; 0 이면 끔",
    ),
    (
        "*/frag_cpu_kind_pct",
        "CPU 전용 종류를 측정에서 인기도의 PCT% 로 셈",
    ),
    (
        "*/frag_half_life",
        "학습한 종류의 가중치가 절반이 되는 태스크 수 (온라인 구성)",
    ),
    (
        "*/frag_max_kinds",
        "측정에 넣을 태스크 종류의 최대 수; 0 이면 모두",
    ),
    (
        "*/frag_request_pct",
        "GPU 종류의 가중치: PCT% 는 GPU 요청량 비중, 나머지는 GPU 파드 수 비중",
    ),
    (
        "*/frag_request_fade_pct",
        "다중 GPU 종류가 GPU 요청량에서 차지하는 비중의 PCT/100 배만큼 요청량 비중을 줄임; 0 이면 그대로",
    ),
    (
        "*/frag_scarcity_cap",
        "모델이 제한된 종류를 희소성 때문에 셀 최대 횟수; 0 이면 끔",
    ),
    (
        "*/frag_tie_from_pct",
        "GPU 공유 종류가 GPU 요청량의 PCT% 이하이면 허용 범위 없음",
    ),
    (
        "*/frag_tie_full_pct",
        "GPU 공유 종류가 GPU 요청량의 PCT% 이상이면 허용 범위 전체 (--frag-tie-from-pct 부터 선형)",
    ),
    (
        "*/frag_tie_milli",
        "GPU 공유 종류가 GPU 요청량의 대부분일 때, 예상 단편화 증가가 가장 낮은 값에서 이 밀리 GPU 안에 있는 노드는 같은 것으로 보고 가장 빡빡한 노드를 고름; 0 이면 가장 낮은 값",
    ),
    (
        "*/frag_whole_gpu_pct",
        "GPU 전체를 쓰는 종류는 `1 + PCT/100 x GPU 수` 번 셈",
    ),
    (
        "*/from",
        "배정 첫날, YYYY-MM-DD: 센터 시간대로 그날 자정에 시작 (기본값: 지금)",
    ),
    ("*/gid", "기본 Unix gid (기본값: uid 와 같음)"),
    (
        "*/gpu_model",
        "작업이 실행될 수 있는 GPU 모델; 여러 개는 쉼표로 구분 (H200,H100)",
    ),
    (
        "*/gpu_quota",
        "프로젝트가 한 번에 가질 수 있는 GPU 수 (보장량)",
    ),
    ("submit/gpus", "전체 GPU 수 (--nodes 에 똑같이 나눔)"),
    ("bench centre/gpus", "노드당 GPU, COUNTxMODEL"),
    ("swarm/gpus", "노드당 모의 GPU, COUNTxMODEL"),
    (
        "bench agent/gpus",
        "로컬 에이전트의 모의 GPU, COUNTxMODEL: 동시에 실행되는 작업 수",
    ),
    ("submit/gpus_per_node", "노드당 GPU 수 (--gpus 대신)"),
    ("bench engine/gpus_per_node", "노드당 GPU 수"),
    (
        "*/grant_share",
        "시나리오 [demand] 의 모든 트랙에 요청한 GPU 의 이 비율을 배정 (0-1)",
    ),
    (
        "server/header_timeout",
        "클라이언트가 TLS 핸드셰이크와 각 요청 헤더에 쓸 수 있는 시간 (초) (HTTP/1.1 keep-alive 연결이 다음 요청을 기다리는 시간이기도 함)",
    ),
    (
        "bench half-open/header_timeout",
        "서버의 --header-timeout (초)",
    ),
    (
        "*/health_command",
        "--health-interval 마다 실행할 셸 명령; 0 이 아닌 종료 (또는 간격을 넘긴 실행) 는 노드를 상태 이상으로 표시하고, 서버는 노드를 드레인하고 작업을 다시 대기열에 넣습니다",
    ),
    ("*/health_interval", "상태 검사 간격 (초)"),
    (
        "agent/telemetry_interval",
        "GPU 원격 측정 간격 (초): 작업이 쓰는 GPU 의 사용률, 메모리, 전력, 온도를 재어 한 번에 서버로 보냄",
    ),
    (
        "up/telemetry_interval",
        "로컬 에이전트의 GPU 원격 측정 간격 (초)",
    ),
    (
        "*/heartbeat_ms",
        "하트비트 주기, ms (기본값: 서버가 요청한 간격). 짧은 `--node-timeout` 으로 시험하면 더 짧게",
    ),
    ("*/id", "작업 번호"),
    (
        "cancel/id",
        "작업 번호 (배열 번호는 모든 태스크를 취소), 또는 태스크 하나는 ARRAY_TASK",
    ),
    ("show/id", "작업 번호, 또는 배열의 태스크 하나는 ARRAY_TASK"),
    (
        "*/idle_timeout",
        "트래픽도 진행 중인 요청도 없을 때 연결을 닫기까지의 시간 (초)",
    ),
    (
        "*/incremental",
        "시간을 잴 증분 패스 수 (실행 중인 작업 하나가 끝날 때마다)",
    ),
    (
        "*/insecure_http",
        "루프백이 아닌 주소에서 평문 HTTP 제공. 신뢰하는 네트워크의 TLS 종단 프록시 뒤에서만 쓰세요: 토큰과 작업 출력이 평문으로 오갑니다",
    ),
    ("*/job_file", "TOML 작업 파일 (--file 과 같음)"),
    ("*/jobs", "작업 수 (각각 모의 GPU 하나에서 `true` 실행)"),
    ("bench openb-variants/json", "표 대신 행마다 JSON 객체 하나"),
    ("submit/json", "표 대신 스크립트용 JSON 출력"),
    ("queue/json", "표 대신 스크립트용 JSON 출력"),
    ("show/json", "표 대신 스크립트용 JSON 출력"),
    ("eff/json", "표 대신 스크립트용 JSON 출력"),
    (
        "eff/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "eff/ca_file",
        "공개 루트 대신 서버 인증서에 서명한 CA 인증서 (PEM) (기본값: 클라이언트 설정의 `ca_file`)",
    ),
    (
        "eff/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    ("logs/json", "표 대신 스크립트용 JSON 출력"),
    ("cancel/json", "표 대신 스크립트용 JSON 출력"),
    ("*/reason", "사유 (감사 로그에 기록)"),
    ("usage/json", "표 대신 스크립트용 JSON 출력"),
    ("whoami/json", "표 대신 스크립트용 JSON 출력"),
    ("project/json", "표 대신 스크립트용 JSON 출력"),
    ("project create/json", "표 대신 스크립트용 JSON 출력"),
    ("project list/json", "표 대신 스크립트용 JSON 출력"),
    ("project show/json", "표 대신 스크립트용 JSON 출력"),
    ("project set-quota/json", "표 대신 스크립트용 JSON 출력"),
    ("user/json", "표 대신 스크립트용 JSON 출력"),
    ("user create/json", "표 대신 스크립트용 JSON 출력"),
    ("user update/json", "표 대신 스크립트용 JSON 출력"),
    ("user list/json", "표 대신 스크립트용 JSON 출력"),
    ("user show/json", "표 대신 스크립트용 JSON 출력"),
    ("user approve/json", "표 대신 스크립트용 JSON 출력"),
    ("token/json", "표 대신 스크립트용 JSON 출력"),
    ("token create/json", "표 대신 스크립트용 JSON 출력"),
    ("token list/json", "표 대신 스크립트용 JSON 출력"),
    ("token revoke/json", "표 대신 스크립트용 JSON 출력"),
    ("pool/json", "표 대신 스크립트용 JSON 출력"),
    ("pool create/json", "표 대신 스크립트용 JSON 출력"),
    ("pool list/json", "표 대신 스크립트용 JSON 출력"),
    ("node/json", "표 대신 스크립트용 JSON 출력"),
    ("node list/json", "표 대신 스크립트용 JSON 출력"),
    ("node show/json", "표 대신 스크립트용 JSON 출력"),
    ("node drain/json", "표 대신 스크립트용 JSON 출력"),
    ("node resume/json", "표 대신 스크립트용 JSON 출력"),
    ("audit/json", "표 대신 스크립트용 JSON 출력"),
    ("audit list/json", "표 대신 스크립트용 JSON 출력"),
    ("audit verify/json", "표 대신 스크립트용 JSON 출력"),
    ("org create/json", "표 대신 스크립트용 JSON 출력"),
    ("org list/json", "표 대신 스크립트용 JSON 출력"),
    ("org show/json", "표 대신 스크립트용 JSON 출력"),
    ("org verify/json", "표 대신 스크립트용 JSON 출력"),
    ("org import-denied/json", "표 대신 스크립트용 JSON 출력"),
    ("award create/json", "표 대신 스크립트용 JSON 출력"),
    ("award list/json", "표 대신 스크립트용 JSON 출력"),
    ("award adjust/json", "표 대신 스크립트용 JSON 출력"),
    ("award underuse/json", "표 대신 스크립트용 JSON 출력"),
    ("award notices/json", "표 대신 스크립트용 JSON 출력"),
    ("call create/json", "표 대신 스크립트용 JSON 출력"),
    ("call list/json", "표 대신 스크립트용 JSON 출력"),
    ("call show/json", "표 대신 스크립트용 JSON 출력"),
    ("call close/json", "표 대신 스크립트용 JSON 출력"),
    ("call open/json", "표 대신 스크립트용 JSON 출력"),
    ("call award/json", "표 대신 스크립트용 JSON 출력"),
    ("application create/json", "표 대신 스크립트용 JSON 출력"),
    ("application list/json", "표 대신 스크립트용 JSON 출력"),
    ("application score/json", "표 대신 스크립트용 JSON 출력"),
    ("statement/json", "표 대신 스크립트용 JSON 출력"),
    ("sim/json", "정책마다 객체 하나인 JSON 배열 출력"),
    ("bench openb/json", "표 대신 JSON 객체 하나 출력"),
    ("bench centre/json", "사람용 출력 대신 JSON 객체 하나 출력"),
    (
        "bench half-open/json",
        "사람용 출력 대신 JSON 객체 하나 출력",
    ),
    ("bench engine/json", "글 대신 JSON 객체 하나 출력"),
    ("bench agent/json", "글 대신 JSON 객체 하나 출력"),
    (
        "bench telemetry",
        "GPU 원격 측정을 저장소에 쓰기: 여러 작성자의 지속 샘플 속도를 --gpus 개 GPU 가 --interval 마다 필요로 하는 속도와 비교",
    ),
    ("bench telemetry/gpus", "센터의 GPU 수 (노드당 8 개)"),
    ("bench telemetry/interval", "에이전트 샘플 간격 (초)"),
    ("bench telemetry/seconds", "쉬지 않고 쓰는 시간 (초)"),
    (
        "bench telemetry/writers",
        "동시 작성자 수 (서버의 요청 처리기)",
    ),
    (
        "bench telemetry/postgres",
        "SQLite 파일 대신 잴 PostgreSQL URL (그 데이터베이스를 그대로 사용)",
    ),
    ("bench telemetry/json", "글 대신 JSON 객체 하나 출력"),
    ("plan/json", "plan.json 을 표준 출력으로"),
    (
        "*/lease_ttl",
        "리더 임대 기간 (초); 리더가 멈추면 이만큼 뒤에 대기 서버가 이어받음",
    ),
    (
        "*/lending",
        "open (모든 프로젝트) 또는 owner-only (소유자만)",
    ),
    (
        "audit list/limit",
        "최대 항목 수 (조건에 맞는 최신 항목부터)",
    ),
    ("queue/limit", "최대 작업 수, 최신순 (1 ~ 1000)"),
    ("up/listen", "API 주소"),
    ("server/listen", "API 를 제공할 주소"),
    (
        "*/max_connections",
        "동시에 처리할 연결 수; 넘는 연결은 Retry-After 와 함께 503 을 받습니다. 프로세스의 파일 한도에 맞게 낮춰집니다",
    ),
    (
        "*/max_gpu_temp",
        "이 온도(섭씨) 이상인 GPU 는 상태 검사에 실패합니다 (실제 GPU 만)",
    ),
    (
        "*/max_p90_wait_h",
        "추천 장비 구성이 95% 신뢰도로 넘지 않아야 할 p90 대기 시간 (시간)",
    ),
    (
        "*/max_scored_nodes",
        "태스크 하나에 GPU 모델별로 점수를 매길 같은 노드 그룹의 최대 수 (정책의 `max_scored_nodes`)",
    ),
    (
        "*/metrics_token_file",
        "`/metrics` 가 `Authorization: Bearer` 로 요구할 토큰이 든 파일 (Prometheus: `authorization: {credentials_file: ...}`); 없으면 `/metrics` 는 공개",
    ),
    ("*/mix", "측정에 쓸 pod 구성의 출처: given, online, both"),
    (
        "*/mixes",
        "스윕할 가속기 구성 (서버 비율): H200 또는 H200:3+NPU:1; 여러 번 지정 가능 (기본값: H200, B200, H200:3+NPU:1)",
    ),
    (
        "*/month",
        "YYYY-MM: 센터 시간대의 월 (센터가 따로 정하지 않으면 Asia/Seoul)",
    ),
    ("submit/name", "작업 이름"),
    ("agent/name", "노드 이름 (기본값: 호스트 이름)"),
    (
        "*/name_prefix",
        "노드 이름은 PREFIX-0000, PREFIX-0001, ...; 블록은 PREFIX-b0, PREFIX-b1, ...",
    ),
    (
        "*/node_timeout",
        "하트비트가 없으면 노드를 유실로 보고 작업을 다시 대기열에 넣기까지의 시간 (초)",
    ),
    ("swarm/nodes", "유지할 모의 노드 수"),
    (
        "bench openb/nodes",
        "노드 목록 CSV; 기본값은 pod 목록 옆의 openb_node_list_gpu_node.csv",
    ),
    (
        "bench openb-variants/nodes",
        "노드 목록 CSV; 기본값은 pod 목록 옆의 openb_node_list_gpu_node.csv",
    ),
    (
        "submit/nodes",
        "노드 수 (함께 시작하는 태스크, 노드마다 하나)",
    ),
    ("bench engine/nodes", "장비 구성의 노드 수"),
    ("bench centre/nodes", "모의 노드 수"),
    (
        "bench gang/nodes",
        "모의 노드 수; 갱이 모든 노드의 모든 GPU를 씀",
    ),
    ("bench gang/gpus", "노드당 GPU, COUNTxMODEL"),
    ("bench gang/json", "사람용 출력 대신 JSON 객체 하나 출력"),
    (
        "bench gang/database",
        "임시 디렉터리의 SQLite 대신 서버가 쓸 PostgreSQL URL",
    ),
    (
        "bench submit/count",
        "셸 반복문의 제출 수, 그리고 단독 클라이언트의 제출 수",
    ),
    (
        "bench submit/nodes",
        "그동안 긴 폴링을 유지하고 하트비트를 보내는 모의 노드 수 (0: 없음)",
    ),
    ("bench submit/gpus", "노드당 GPU, COUNTxMODEL"),
    (
        "bench submit/baseline",
        "이 바이너리 대신 서버와 반복문의 클라이언트로 실행할 다른 `haneul` 바이너리 (예: 이전 빌드); 같은 머신에서 같은 때에 기준과 비교",
    ),
    ("bench submit/json", "사람용 출력 대신 JSON 객체 하나 출력"),
    (
        "bench submit/database",
        "임시 디렉터리의 SQLite 대신 서버가 쓸 PostgreSQL URL",
    ),
    (
        "bench half-open/nodes",
        "그동안 하트비트를 보내는 모의 노드 수",
    ),
    ("*/nodes_per_block", "블록 (네트워크 리프) 당 노드 수"),
    (
        "*/online",
        "목록의 구성을 미리 받지 않고 도착하는 pod 로 구성을 학습 (감쇠 계수)",
    ),
    ("*/org", "기관 (org-admin 과 member)"),
    (
        "plan/out",
        "plan.json, candidates.csv, pareto.svg, plan.svg, report.html 을 여기에 씀",
    ),
    ("sim/out", "report.json, CSV 표, SVG 차트를 여기에 씀"),
    (
        "sim/explain",
        "정책마다 유휴 GPU 시간을 원인별로 나눔 (예약, 회수 대기, 쿼터, 시작 안 됨, 단편화, 수요 없음): 표로, 또는 JSON 의 explain",
    ),
    (
        "token create/out",
        "비밀 값을 출력하지 않고 이 파일에 씀 (모드 0600)",
    ),
    ("*/owner", "소유 기관"),
    ("*/parent", "모기관 번호 (여기 등록되어 있을 때)"),
    (
        "*/parent_country",
        "최종 모기업의 국가 (등록된 기관이 아닐 때)",
    ),
    (
        "user list/pending",
        "기관 계정으로 로그인해 승인을 기다리는 사람만",
    ),
    (
        "user approve/id",
        "승인을 기다리는 사용자의 번호 (`haneul user list --pending`)",
    ),
    (
        "*/pending",
        "검증 전 상태로 등록: `haneul org verify` 전까지 작업이 보류됨",
    ),
    (
        "*/placement",
        "배치 전략: fragmentation, fgd-paper, best-fit, first-fit",
    ),
    ("*/placements", "배치 전략, 쉼표로 구분"),
    ("*/plan", "GPU 사용 목적"),
    (
        "bench openb/pods",
        "pod 목록 CSV (기본값: 트레이스 디렉터리 아래 alibaba-gpu-v2023-openb/csv/openb_pod_list_default.csv)",
    ),
    (
        "bench openb-variants/pods",
        "변형을 만들 기본 pod 목록, 예: ../shared/traces/alibaba-gpu-v2023-openb/csv/openb_pod_list_default.csv",
    ),
    (
        "*/policies",
        "실행할 정책 (fifo, slurm-like, haneul, 또는 시나리오의 사용자 정책); 여러 번 지정 가능",
    ),
    ("*/policy", "모든 후보에 적용할 정책 (기본값: haneul)"),
    ("*/poll_wait_ms", "배정 롱 폴링이 변경을 기다리는 시간, ms"),
    ("swarm/pool", "모든 노드가 합류할 풀"),
    ("agent/pool", "노드가 속한 풀"),
    (
        "*/priority",
        "low (낮음), normal (보통), high (높음), urgent (긴급)",
    ),
    (
        "user create/project",
        "구성원이 속한 프로젝트; 여러 개면 반복",
    ),
    ("queue/project", "이 프로젝트의 작업만"),
    (
        "submit/project",
        "프로젝트 번호 (기본값: 설정의 project, HANEUL_PROJECT, 또는 내 유일한 프로젝트)",
    ),
    (
        "*/project_gid_range",
        "새 프로젝트에 줄 Unix 그룹 번호, FIRST-LAST (--uid-range 와 겹치면 안 됨)",
    ),
    ("*/projects", "장비를 나눠 쓰는 프로젝트 수"),
    (
        "bench centre/queued",
        "측정 단계 전에 제출할 밀린 작업 수 (각 GPU 1개)",
    ),
    ("bench engine/queued", "첫 패스 전 대기열의 작업 수"),
    (
        "*/quota",
        "MODEL=GPUS[:BORROW_LIMIT]: 모델별 보장 GPU 수와, 유휴 GPU 를 빌려 쓸 때의 전체 한도 (없으면 무제한). 모델마다 반복",
    ),
    (
        "*/rate",
        "측정 단계의 초당 제출 수 (각 GPU 1개, `sleep 30`)",
    ),
    ("*/region", "기본값: 기관의 국가"),
    ("*/reviewer", "기본값: 내 사용자 이름"),
    (
        "*/role",
        "centre-admin (센터 관리자), org-admin (기관 관리자), member (구성원), auditor (감사), agent (에이전트)",
    ),
    (
        "sim/scenario",
        "시나리오 파일 (TOML): 장비 구성, 워크로드, 시드, 정책",
    ),
    (
        "plan/scenario",
        "시나리오 파일: 워크로드, 시드, 카탈로그, 계획기의 [site] 와 [demand]",
    ),
    ("bench half-open/seconds", "공격 지속 시간"),
    ("bench centre/seconds", "측정 단계 길이 (초)"),
    (
        "*/secure_cookie",
        "포털 세션 쿠키에 `Secure` 표시 (클라이언트가 직접 또는 프록시를 거쳐 TLS 로 접속할 때 설정)",
    ),
    (
        "bench openb-variants/seeds",
        "재현 시드, `bench openb` 와 같음",
    ),
    (
        "bench openb/seeds",
        "시드: 범위 `A..B` (끝 포함) 또는 쉼표로 구분한 목록",
    ),
    (
        "plan/seeds",
        "후보당 시드 수 (시나리오의 시드와 그 뒤의 시드)",
    ),
    (
        "swarm/server",
        "서버 기본 URL (http://HOST:PORT 또는 https://HOST:PORT); 여러 개는 쉼표로 구분",
    ),
    (
        "agent/server",
        "서버 기본 URL (http://HOST:PORT 또는 https://HOST:PORT); 한 센터의 여러 서버는 쉼표로 구분 (에이전트는 한 번에 하나를 쓰고, 닿지 않으면 다음으로 넘어가며, 대기 서버가 알려 주는 리더로 옮겨 감)",
    ),
    (
        "submit/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "queue/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "show/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "logs/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "cancel/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "usage/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "whoami/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "project/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "project create/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "project list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "project show/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "project set-quota/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "user/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "user create/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "user update/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "user list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "user show/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "user approve/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "token/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "token create/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "token list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "token revoke/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "pool/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "pool create/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "pool list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "node/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "node list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "node show/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "node drain/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "node resume/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "audit/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "audit list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "audit verify/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "org create/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "org list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "org show/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "org verify/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "org import-denied/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "award create/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "award list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "award adjust/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "award underuse/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "award notices/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "call create/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "call list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "call show/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "call close/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "call open/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "call award/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "application create/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "application list/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "application score/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "statement/server",
        "서버 기본 URL, http:// 또는 https:// (기본값: `haneul up` 이 쓴 클라이언트 설정의 `server`); 한 센터의 여러 서버는 쉼표로 구분",
    ),
    (
        "*/servers",
        "스윕할 서버 수: FROM..TO/STEP 또는 목록 (32,64,128)",
    ),
    ("*/session_hours", "포털 세션의 최대 유지 시간 (시간)"),
    (
        "*/session_idle_minutes",
        "요청 없이 포털 세션이 유지되는 시간 (분)",
    ),
    (
        "up/simulate_gpus",
        "모의 GPU, COUNTxMODEL (nvidia-smi 가 없으면 기본값 8xH200)",
    ),
    (
        "agent/simulate_gpus",
        "GPU 없는 머신용 모의 GPU, COUNTxMODEL (예: 8xH200): 태스크는 CUDA_VISIBLE_DEVICES 번호를 받지만 실제 GPU 는 없음",
    ),
    ("*/source", "출처가 없는 행에 적을 목록의 출처"),
    (
        "*/state",
        "이 상태의 작업만: queued, running, stopping, succeeded, failed, cancelled, timed_out",
    ),
    (
        "*/stats_every",
        "이 초마다 카운터를 JSON 한 줄로 출력 (0: 끝에만)",
    ),
    (
        "*/status",
        "verified (검증됨), pending (대기), suspended (정지됨)",
    ),
    (
        "*/sweep",
        "장비 규모와 구성을 스윕: --servers 수와 --mix 마다 후보 하나",
    ),
    ("*/target", "대상에 이 글자가 든 항목만 (job/42, project/3)"),
    (
        "*/task_user",
        "태스크를 실행할 계정: `auto` (에이전트가 root 면 `owner`, 아니면 `agent`), `owner` (서버가 알려 주는 작업 소유자의 uid, gid, 프로젝트 그룹; root 필요), `agent` (root 가 아닌 에이전트 자신의 계정: 모든 태스크가 공유), `submitter` (작업 사용자와 같은 이름의 Unix 계정; root 필요)",
    ),
    (
        "*/threads",
        "작업 스레드 수 (기본값: 코어마다 하나). 수와 관계없이 계획은 같음",
    ),
    (
        "*/time",
        "시간 제한: 90s, 10m, 2h, 1d, 1:30:00 (숫자만 쓰면 Slurm 처럼 분)",
    ),
    (
        "up/tls",
        "첫 실행 때 만들어 DATA_DIR/tls/ 에 두는 로컬 인증 기관으로 HTTPS 제공 (클라이언트는 ca.pem 을 신뢰)",
    ),
    (
        "bench agent/tls",
        "TLS 로 제공 (`haneul up --tls`: 로컬 인증 기관; 에이전트와 이 벤치가 신뢰)",
    ),
    (
        "bench centre/tls",
        "한 번의 실행에서 측정 전체를 두 번 수행: 평문 HTTP 로, 이어서 TLS 로 (`haneul up --tls` 처럼 새 로컬 인증 기관과 서버 인증서), 둘과 주요 수치의 비율을 보고",
    ),
    (
        "*/tls_cert",
        "HTTPS 에 쓸 PEM 인증서 체인 (리프 먼저); SIGHUP 에 다시 읽음",
    ),
    ("*/tls_key", "--tls-cert 의 PEM 개인 키"),
    ("*/token", "`agent` 토큰"),
    (
        "*/token_expiry_days",
        "`--expires` 없이 만든 사람의 토큰이 유효한 일수 (에이전트 토큰은 지정하지 않으면 만료되지 않음). 0: 기본 만료 없음",
    ),
    ("agent/token_file", "`agent` 토큰이 든 파일"),
    ("swarm/token_file", "`agent` 토큰이 든 파일"),
    (
        "submit/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "queue/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "show/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "logs/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "cancel/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "usage/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "whoami/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "project/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "project create/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "project list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "project show/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "project set-quota/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "user/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "user create/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "user update/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "user list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "user show/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "user approve/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "token/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "token create/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "token list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "token revoke/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "pool/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "pool create/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "pool list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "node/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "node list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "node show/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "node drain/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "node resume/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "audit/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "audit list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "audit verify/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "org create/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "org list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "org show/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "org verify/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "org import-denied/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "award create/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "award list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "award adjust/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "award underuse/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "award notices/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "call create/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "call list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "call show/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "call close/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "call open/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "call award/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "application create/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "application list/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "application score/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "statement/token_file",
        "내 토큰이 든 파일 (기본값: 환경 변수 HANEUL_TOKEN, 그다음 설정 파일)",
    ),
    (
        "*/trace",
        "FORMAT:PATH 형식의 트레이스 (philly, openb, csv, jsonl), --fleet 과 함께. openb 는 장비 구성이 기본으로 트레이스의 노드 목록 (pod 목록 옆의 openb_node_list_gpu_node.csv) 입니다",
    ),
    (
        "bench openb/traces",
        "공개 트레이스 파일 디렉터리 (기본값: 있으면 ../shared/traces)",
    ),
    (
        "sim/traces",
        "워크로드가 `trace` 를 지정한 시나리오용 공개 트레이스 파일 디렉터리 (기본값: 있으면 ../shared/traces)",
    ),
    (
        "*/track",
        "트랙: name=N,min=G,max=G,days=D[,org-cap=G][,region=R][,whole-server][,server-gpus=G]",
    ),
    (
        "*/uid",
        "사용자의 태스크가 실행될 Unix uid (기본값: 서버 --uid-range 의 다음 번호; 0 이나 에이전트의 uid 는 불가)",
    ),
    (
        "*/uid_range",
        "새 사용자에게 줄 Unix uid (기본 gid 도 같은 번호), FIRST-LAST",
    ),
    (
        "*/until",
        "배정이 끝나는 날, YYYY-MM-DD: 센터 시간대로 그날이 시작될 때 끝남",
    ),
    ("*/user", "토큰이 대신할 사용자 (기본값: 나)"),
    (
        "*/variant_seed",
        "변형별 생성기 시드의 기준값 (변형마다 이름을 섞음)",
    ),
    (
        "*/variants",
        "변형, 쉼표로 구분 (default, gpushare40, cpu050, multigpu20, gpuspec10, ...), 또는 docs/benchmarks.md 의 17개 모두는 `all`",
    ),
    ("*/weight", "공정 분배 가중치, 1 이상"),
    (
        "*/work_dir",
        "태스크 작업 디렉터리 위치: DIR/job-J/attempt-F/task-T",
    ),
    (
        "*/write_burst",
        "--write-rate 가 적용되기 전에 토큰이 몰아서 할 수 있는 쓰기 수",
    ),
    (
        "*/write_rate",
        "토큰당 초당 쓰기 수 (0: 제한 없음); 에이전트 프로토콜은 제한하지 않음",
    ),
    (
        "*/xid_events_file",
        "시험과 훈련 전용, --simulate-gpus 와 함께: NVML 이 보낸 것처럼 처리할 XID 이벤트, 이 파일에 덧붙인 `GPU XID` 한 줄씩 (예: `1 79`)",
    ),
    (
        "*/year",
        "운영 몇 년째를 계획할지 (수요는 [demand] growth_per_year 만큼 증가)",
    ),
];

/// Clap's own words, for the help template and the built-in arguments.
const USAGE: &str = "사용법:";
const OPTIONS: &str = "옵션";
const ARGUMENTS: &str = "인자";
const COMMANDS: &str = "명령";
const EXAMPLES: &str = "예시:";

fn lookup(key: &str) -> Option<&'static str> {
    KO.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Clap's own `help` subcommand and `--help`, `--version` flags.
const HELP_COMMAND: &str = "이 도움말 또는 지정한 하위 명령의 도움말 출력";
const HELP_FLAG: &str = "도움말 출력";
const VERSION_FLAG: &str = "버전 출력";

/// The Korean of a command at `path`. Clap's `help` subcommand (`project help create`) says
/// what the command it names says.
fn command_text(path: &str) -> Option<&'static str> {
    let words: Vec<&str> = path.split(' ').collect();
    match words.iter().position(|w| *w == "help") {
        Some(i) if i + 1 == words.len() => Some(HELP_COMMAND),
        Some(i) => {
            let named: Vec<&str> = words[..i].iter().chain(&words[i + 1..]).copied().collect();
            command_text(&named.join(" "))
        }
        None => lookup(if path.is_empty() { "haneul" } else { path }),
    }
}

/// The Korean of argument `id` of the command at `path`.
fn arg_text(path: &str, id: &str) -> Option<&'static str> {
    match id {
        "help" => Some(HELP_FLAG),
        "version" => Some(VERSION_FLAG),
        _ => lookup(&format!("{path}/{id}")).or_else(|| lookup(&format!("*/{id}"))),
    }
}

/// The tree with every summary and help in Korean. Clap's built-in `help` and `version`
/// arguments and `help` subcommand exist only once the tree is built, so it is built first.
pub fn apply(mut cmd: Command) -> Command {
    cmd.build();
    apply_at(cmd, "")
}

fn apply_at(mut cmd: Command, path: &str) -> Command {
    if let Some(ko) = command_text(path) {
        cmd = cmd.about(ko).long_about(None::<&str>);
    }
    if let Some(after) = cmd.get_after_help().map(|h| h.to_string()) {
        let after = lookup(&format!(
            "{}@after",
            if path.is_empty() { "haneul" } else { path }
        ))
        .map(str::to_string)
        .unwrap_or_else(|| after.replacen("Examples:", EXAMPLES, 1));
        cmd = cmd.after_help(after).after_long_help(None::<&str>);
    }
    cmd = cmd
        .help_template(format!(
            "{{before-help}}{{about-with-newline}}\n{USAGE} {{usage}}\n\n{{all-args}}{{after-help}}"
        ))
        .subcommand_help_heading(COMMANDS);
    let ids: Vec<(String, bool, bool)> = cmd
        .get_arguments()
        .map(|a| {
            let helped = a.get_help().is_some() || a.get_long_help().is_some();
            (a.get_id().to_string(), a.is_positional(), helped)
        })
        .collect();
    for (id, positional, helped) in ids {
        // An argument without English help gets no Korean one either.
        let text = arg_text(path, &id).filter(|_| helped);
        cmd = cmd.mut_arg(&id, |a| {
            let a = a.help_heading(if positional { ARGUMENTS } else { OPTIONS });
            match text {
                Some(ko) => a.help(ko).long_help(None::<&str>),
                None => a,
            }
        });
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subs {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |s| apply_at(s, &sub_path));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every command path with its English summary and after-help, and `(path, id, English
    /// help)` of every argument.
    #[derive(Default)]
    struct Tree {
        commands: Vec<(String, String)>,
        after: BTreeMap<String, String>,
        args: Vec<(String, String, String)>,
    }

    fn walk(cmd: &Command, path: &str, tree: &mut Tree) {
        let about = cmd
            .get_long_about()
            .or(cmd.get_about())
            .map(|h| h.to_string())
            .unwrap_or_default();
        tree.commands.push((path.to_string(), about));
        if let Some(after) = cmd.get_after_help().map(|h| h.to_string()) {
            // Examples are commands, the same in any language; other lines need Korean.
            let prose = after
                .lines()
                .any(|l| !l.is_empty() && l != "Examples:" && !l.starts_with(' '));
            tree.after.insert(
                path.to_string(),
                if prose { after } else { "examples".into() },
            );
        }
        for a in cmd.get_arguments() {
            let english = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            tree.args
                .push((path.to_string(), a.get_id().to_string(), english));
        }
        for s in cmd.get_subcommands() {
            let sub = if path.is_empty() {
                s.get_name().to_string()
            } else {
                format!("{path} {}", s.get_name())
            };
            walk(s, &sub, tree);
        }
    }

    fn english_tree() -> Tree {
        let mut cmd = crate::command_in(crate::i18n::Lang::En);
        cmd.build();
        let mut tree = Tree::default();
        walk(&cmd, "", &mut tree);
        tree
    }

    fn hangul(s: &str) -> bool {
        s.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c))
    }

    #[test]
    fn every_command_and_argument_has_korean_help() {
        let Tree {
            commands: with_about,
            after,
            args,
        } = english_tree();
        let commands: Vec<String> = with_about.iter().map(|(c, _)| c.clone()).collect();
        let mut missing = Vec::new();
        for (c, en) in &with_about {
            if command_text(c).is_none() {
                let key = if c.is_empty() { "haneul" } else { c };
                missing.push(format!("{key:?} (English: {en:?})"));
            }
            if let Some(en) = after.get(c.as_str())
                && *en != "examples"
                && lookup(&format!(
                    "{}@after",
                    if c.is_empty() { "haneul" } else { c }
                ))
                .is_none()
            {
                missing.push(format!("{c:?}@after (English: {en:?})"));
            }
        }
        // A shared text must fit every place it is used: one English text per shared id.
        let mut shared: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
        for (path, id, english) in &args {
            let built_in = id == "help" || id == "version" || path.split(' ').any(|w| w == "help");
            if english.is_empty() || built_in || lookup(&format!("{path}/{id}")).is_some() {
                continue;
            }
            if lookup(&format!("*/{id}")).is_some() {
                shared
                    .entry(id)
                    .or_default()
                    .entry(english)
                    .or_default()
                    .push(path);
            } else {
                missing.push(format!(
                    "{:?} (English: {english:?})",
                    format!("{path}/{id}")
                ));
            }
        }
        assert!(
            missing.is_empty(),
            "{} texts have no Korean:\n{}",
            missing.len(),
            missing.join("\n")
        );
        for (id, englishes) in &shared {
            assert_eq!(
                englishes.len(),
                1,
                "`*/{id}` is used for different English texts; give each command its own: {englishes:#?}"
            );
        }
        // Every key names something that exists, so that the table holds no stale texts.
        for (key, ko) in KO {
            assert!(hangul(ko), "{key}: no Korean in {ko:?}");
            let known = match key.split_once('/') {
                None => {
                    key.strip_suffix("@after").is_some_and(|k| {
                        commands
                            .iter()
                            .any(|c| c == k || (c.is_empty() && k == "haneul"))
                    }) || commands
                        .iter()
                        .any(|c| c == key || (c.is_empty() && *key == "haneul"))
                }
                Some(("*", id)) => args.iter().any(|(_, i, _)| i == id),
                Some((path, id)) => args.iter().any(|(p, i, _)| p == path && i == id),
            };
            assert!(known, "`{key}` names no command or argument");
        }
    }

    #[test]
    fn korean_help_is_what_clap_prints() {
        let mut ko = crate::command_in(crate::i18n::Lang::Ko);
        let root = ko.render_help().to_string();
        assert!(root.contains(USAGE), "{root}");
        assert!(root.contains(command_text("submit").unwrap()), "{root}");
        let submit = ko
            .find_subcommand_mut("submit")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            submit.contains(arg_text("submit", "gpus").unwrap()),
            "{submit}"
        );
        assert!(submit.contains(OPTIONS), "{submit}");
        let mut en = crate::command_in(crate::i18n::Lang::En);
        let root = en.render_help().to_string();
        assert!(!hangul(&root), "{root}");
    }
}
